from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from nats import connect as connect_to_nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from cdp.profile.v1 import profile_events_pb2
from cdp.segmentation.v1 import segmentation_events_pb2, segmentation_pb2, segmentation_pb2_grpc
from cdp_bus import NatsSettings, OutboxMessage
from cdp_bus.envelope import MSG_ID_HEADER
from cdp_bus.subjects import PROFILE_DELETED, PROFILE_UPDATED, SEGMENT_MEMBERSHIP
from cdp_db import DatabaseSettings
from cdp_embedded import EmbeddedNats, to_asyncpg_dsn
from cdp_grpc import GrpcClientSettings, GrpcServerSettings, create_channel
from cdp_segmentation.bootstrap import SegmentationApp, serve
from cdp_segmentation.settings import SegmentationSettings
from cdp_telemetry import Telemetry
from cdp_testing import wait_until
from cdp_testing.fixtures import (  # noqa: F401
    database_url,
    nats,
    postgres_admin_url,
    span_exporter,
    telemetry,
)
from cdp_testing.services import OnServing, service_running

from ..fakes import FakeClock, FakeConnector, connector_server

if TYPE_CHECKING:
    from cdp.segmentation.v1.segmentation_pb2_grpc import SegmentationServiceAsyncStub

EXAMPLES = Path("services/segmentation/examples")


def example(name: str) -> segmentation_pb2.Segment:
    segment = segmentation_pb2.Segment()
    json_format.Parse((EXAMPLES / f"{name}.json").read_text(), segment)
    return segment


def segment_of(document: dict[str, Any]) -> segmentation_pb2.Segment:
    return json_format.ParseDict(document, segmentation_pb2.Segment())


def customer() -> str:
    return str(uuid.uuid4())


@dataclass
class Announced:
    """`cdp.segment.membership` as received: (segment id, customer id, change name)."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def of(self, segment_id: str) -> list[tuple[str, str]]:
        return [(c, change) for s, c, change in self.seen if s == segment_id]


@dataclass
class RunningSegmentation:
    stub: SegmentationServiceAsyncStub
    app: SegmentationApp
    clock: FakeClock
    connector: FakeConnector
    bus: NatsClient
    database: asyncpg.Connection
    announced: Announced
    versions: dict[str, int] = field(default_factory=dict)

    async def publish(
        self,
        customer_id: str,
        attributes: dict[str, Any],
        *,
        sources: dict[str, str] | None = None,
        version: int | None = None,
        message_id: str | None = None,
    ) -> str:
        """A `cdp.profile.updated` as the profile service publishes it; returns its id."""
        version = version or self.versions.get(customer_id, 0) + 1
        self.versions[customer_id] = max(version, self.versions.get(customer_id, 0))
        body = profile_events_pb2.ProfileUpdated(
            customer_id=customer_id, version=version, occurred_at=_stamp(self.clock.now)
        )
        body.attributes.update(attributes)
        for path, source in (sources or {}).items():
            body.changes.add(path=path, source=source, new_value=struct_pb2.Value())
        return await self._send(PROFILE_UPDATED, body, customer_id, message_id)

    async def publish_deleted(self, customer_id: str, *, merged_into: str = "") -> str:
        body = profile_events_pb2.ProfileDeleted(
            customer_id=customer_id,
            merged_into_customer_id=merged_into,
            occurred_at=_stamp(self.clock.now),
        )
        return await self._send(PROFILE_DELETED, body, customer_id, None)

    async def _send(self, subject: str, body: Any, about: str, message_id: str | None) -> str:
        message = OutboxMessage.of_proto(
            subject, body, source="/cdp/profile", about=about, message_id=message_id
        )
        headers = message.event.headers()
        # Without the id header, a repeated message reaches the consumer (what a relay
        # re-sending after its duplicate window looks like).
        headers.pop(MSG_ID_HEADER)
        await self.bus.jetstream().publish(subject, message.event.data, headers=headers)
        return message.event.id

    async def applied(self, customer_id: str, version: int | None = None) -> None:
        """Waits until the read model holds `version` (the latest published by default)."""
        wanted = version or self.versions[customer_id]

        async def held() -> bool:
            value = await self.database.fetchval(
                "SELECT version FROM segmentation.profiles WHERE customer_id = $1",
                uuid.UUID(customer_id),
            )
            return value is not None and value >= wanted

        await wait_until(held, timeout=20, message=f"profile {customer_id} v{wanted} applied")

    async def handled(self, count: int) -> None:
        """Waits until the consumer has claimed `count` messages in all."""

        async def claimed() -> bool:
            value: int = await self.database.fetchval(
                "SELECT count(*) FROM segmentation.processed_messages"
            )
            return value >= count

        await wait_until(claimed, timeout=20, message=f"{count} profile events handled")

    async def create(self, segment: segmentation_pb2.Segment) -> segmentation_pb2.Segment:
        reply = await self.stub.CreateSegment(
            segmentation_pb2.CreateSegmentRequest(segment=segment)
        )
        return reply.segment

    async def members(self, segment_id: str) -> set[str]:
        found: set[str] = set()
        async for page in self.stub.ListMembers(
            segmentation_pb2.ListMembersRequest(segment_id=segment_id)
        ):
            found.update(m.customer_id for m in page.members)
        return found

    async def pending(self, segment_id: str) -> int:
        value: int = await self.database.fetchval(
            "SELECT count(*) FROM segmentation.pending_deltas WHERE segment_id = $1",
            uuid.UUID(segment_id),
        )
        return value


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


@pytest.fixture
async def connector() -> AsyncIterator[tuple[FakeConnector, str]]:
    # Only SyncSegmentMembership is implemented: segmentation calls nothing else.
    fake = FakeConnector()  # type: ignore[abstract]
    async with connector_server(fake) as address:
        yield fake, address


@pytest.fixture
def segmentation_settings(
    database_url: str,  # noqa: F811
    nats: EmbeddedNats,  # noqa: F811
    connector: tuple[FakeConnector, str],
) -> SegmentationSettings:
    return replace(
        SegmentationSettings(),
        grpc=GrpcServerSettings(port=0, shutdown_grace_seconds=2.0),
        database=DatabaseSettings(url=database_url),
        nats=NatsSettings(url=nats.url),
        connector_addresses=(("mailchimp", connector[1]),),
        members_page_size=100,
        sync_retry_base_seconds=0.01,
    )


@pytest.fixture
async def segmentation(
    segmentation_settings: SegmentationSettings,
    telemetry: Telemetry,  # noqa: F811
    nats: EmbeddedNats,  # noqa: F811
    connector: tuple[FakeConnector, str],
) -> AsyncIterator[RunningSegmentation]:
    clock = FakeClock()
    apps: list[SegmentationApp] = []

    async def start(stop: asyncio.Event, on_serving: OnServing) -> None:
        await serve(
            segmentation_settings,
            stop=stop,
            telemetry=telemetry,
            on_serving=on_serving,
            on_app=apps.append,
            clock=clock,
            run_scheduler=False,
        )

    announced = Announced()

    async def on_message(message: Msg) -> None:
        body = segmentation_events_pb2.SegmentMembershipChanged()
        body.ParseFromString(message.data)
        change = segmentation_events_pb2.MembershipChange.Name(body.change)
        announced.seen.append((body.segment_id, body.customer_id, change))

    bus = await nats_connect(nats.url)
    await bus.subscribe(SEGMENT_MEMBERSHIP, cb=on_message)
    async with service_running(start) as server:
        channel = create_channel(server.address, GrpcClientSettings(), telemetry=telemetry)
        dsn, kwargs = to_asyncpg_dsn(segmentation_settings.database.url)
        database = await asyncpg.connect(dsn, **kwargs)
        try:
            yield RunningSegmentation(
                segmentation_pb2_grpc.SegmentationServiceStub(channel),
                apps[0],
                clock,
                connector[0],
                bus,
                database,
                announced,
            )
        finally:
            await database.close()
            await channel.close(None)
            await bus.close()


async def nats_connect(url: str) -> NatsClient:
    client: NatsClient = await connect_to_nats(url)
    return client


def emails(calls: Sequence[Any], kind: str) -> list[str]:
    return [email for call in calls for email in getattr(call, kind)]


def as_json(message: Any) -> str:
    return json.dumps(json_format.MessageToDict(message))
