from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from mailchimp_sandbox.app import Sandbox, SandboxConfig, start_sandbox, stop_sandbox
from mailchimp_sandbox.settings import SANDBOX_API_KEY

from cdp.connector.v1 import connector_pb2_grpc
from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_bus import NatsSettings
from cdp_db import DatabaseSettings
from cdp_embedded.nats import free_port
from cdp_grpc import GrpcClientSettings, GrpcServerSettings, create_channel
from cdp_mailchimp_connector.bootstrap import serve
from cdp_mailchimp_connector.settings import (
    ConnectorSettings,
    MailchimpSettings,
    RoutedEventsSettings,
)
from cdp_settings import Secret
from cdp_telemetry import Telemetry
from cdp_testing.services import OnServing, service_running

if TYPE_CHECKING:
    from cdp.connector.v1.connector_pb2_grpc import ConnectorServiceAsyncStub
from cdp_testing.fixtures import (  # noqa: F401
    database_url,
    nats,
    postgres_admin_url,
    span_exporter,
    telemetry,
)

LIST_ID = "c0ffee0001"


@dataclass
class RunningSandbox:
    url: str
    state: Sandbox

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        def send() -> Any:
            data = json.dumps(body).encode() if body is not None else None
            request = urllib.request.Request(
                f"{self.url}{path}", data=data, method=method,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as reply:
                return json.loads(reply.read())

        return await asyncio.to_thread(send)

    @property
    def audience(self) -> Any:
        return self.state.account.lists[LIST_ID]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    config = SandboxConfig(api_key=SANDBOX_API_KEY, webhook_retry_delays=(0.05, 0.2, 0.5, 1.0))
    runner, state, url = await start_sandbox(config)
    try:
        yield RunningSandbox(url, state)
    finally:
        await stop_sandbox(runner, state)


@dataclass
class FakeRouter(events_pb2_grpc.EventRouterServiceServicer):
    """Stands in for the event router: real gRPC over a socket, the real contract."""

    events: list[events_pb2.Event] = field(default_factory=list)
    fail_calls: int = 0

    async def PublishEvents(self, request: Any, context: Any) -> Any:
        if self.fail_calls > 0:
            self.fail_calls -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "router restarting")
        results = []
        for event in request.events:
            seen = any(e.id == event.id for e in self.events)
            if not seen:
                self.events.append(event)
            results.append(events_pb2.PublishEventResult(
                event_id=event.id,
                status=events_pb2.PUBLISH_STATUS_DUPLICATE if seen
                else events_pb2.PUBLISH_STATUS_ACCEPTED,
            ))
        return events_pb2.PublishEventsResponse(results=results)

    def of_type(self, event_type: str) -> list[events_pb2.Event]:
        return [e for e in self.events if e.type == event_type]


@dataclass
class FakeProfiles(profile_pb2_grpc.ProfileServiceServicer):
    fragments: list[profile_pb2.ProfileFragment] = field(default_factory=list)

    async def IngestProfileFragments(self, request: Any, context: Any) -> Any:
        self.fragments.extend(request.fragments)
        return profile_pb2.IngestProfileFragmentsResponse(results=[
            profile_pb2.IngestProfileFragmentResult(
                ingested=profile_pb2.IngestProfileFragmentResponse(customer_id="c")
            ) for _ in request.fragments
        ])


@dataclass
class FakeIdentity(identity_pb2_grpc.IdentityServiceServicer):
    """The identity map's primary emails, for routed events that carry only a customer id."""

    primary_emails: dict[str, str] = field(default_factory=dict)

    async def GetIdentityMap(self, request: Any, context: Any) -> Any:
        if request.customer_id not in self.primary_emails:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such customer")
        return identity_pb2.GetIdentityMapResponse(
            customer_id=request.customer_id,
            primary_email=self.primary_emails[request.customer_id],
        )


@dataclass
class Peers:
    router: FakeRouter
    profiles: FakeProfiles
    identity: FakeIdentity
    address: str
    server: grpc.aio.Server


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    server = grpc.aio.server()
    # Only the batch calls the connector makes are implemented; the rest answer UNIMPLEMENTED.
    router = FakeRouter()  # type: ignore[abstract]
    profiles = FakeProfiles()  # type: ignore[abstract]
    identity = FakeIdentity()  # type: ignore[abstract]
    events_pb2_grpc.add_EventRouterServiceServicer_to_server(router, server)
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(profiles, server)
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(identity, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Peers(router, profiles, identity, f"127.0.0.1:{port}", server)
    finally:
        await server.stop(None)


@dataclass
class RunningConnector:
    stub: ConnectorServiceAsyncStub
    settings: ConnectorSettings
    webhook_url: str


def connector_settings(
    database_url: str, sandbox: RunningSandbox, peers: Peers, *, nats_url: str = "",
    routed_attempts: int = 1000, **mailchimp: Any,
) -> ConnectorSettings:
    base = MailchimpSettings(
        api_key=Secret(SANDBOX_API_KEY),
        api_url=f"{sandbox.url}/3.0",
        list_id=LIST_ID,
        retry_base_seconds=0.01,
        retry_max_seconds=0.2,
        webhook_port=free_port(),
        activity_interval_seconds=0,
        batch_poll_seconds=0.05,
    )
    return replace(
        ConnectorSettings(),
        grpc=GrpcServerSettings(port=0, shutdown_grace_seconds=2.0),
        database=DatabaseSettings(url=database_url),
        mailchimp=replace(base, **mailchimp),
        event_router_addr=peers.address,
        profile_addr=peers.address,
        identity_addr=peers.address,
        nats=NatsSettings(url=nats_url),
        routed_events=RoutedEventsSettings(retry_delays=(0.1, 0.3), ack_wait_seconds=5.0,
                                           reconnect_delay_seconds=0.2,
                                           max_attempts=routed_attempts),
    )


@contextlib.asynccontextmanager
async def run_connector(settings: ConnectorSettings, telemetry: Telemetry
                        ) -> AsyncIterator[RunningConnector]:
    async def start(stop: asyncio.Event, on_serving: OnServing) -> None:
        await serve(settings, stop=stop, telemetry=telemetry, on_serving=on_serving)

    async with service_running(start) as server:
        channel = create_channel(server.address, GrpcClientSettings(default_timeout_seconds=60))
        try:
            yield RunningConnector(
                connector_pb2_grpc.ConnectorServiceStub(channel),
                settings,
                f"http://127.0.0.1:{settings.mailchimp.webhook_port}/webhooks/mailchimp",
            )
        finally:
            await channel.close(grace=None)


@pytest.fixture
async def connector(
    database_url: str, sandbox: RunningSandbox, peers: Peers, telemetry: Telemetry
) -> AsyncIterator[RunningConnector]:
    async with run_connector(connector_settings(database_url, sandbox, peers),
                             telemetry) as running:
        yield running
