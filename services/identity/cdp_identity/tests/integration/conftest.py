from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_bus import NatsSettings, connect_nats
from cdp_db import DatabaseSettings
from cdp_embedded import EmbeddedNats
from cdp_grpc import GrpcClientSettings, GrpcServerSettings, create_channel
from cdp_identity.bootstrap import serve
from cdp_identity.settings import IdentitySettings
from cdp_telemetry import Telemetry
from cdp_testing.services import OnServing, service_running

if TYPE_CHECKING:
    from cdp.identity.v1.identity_pb2_grpc import IdentityServiceAsyncStub
from cdp_testing.fixtures import (  # noqa: F401
    database_url,
    nats,
    postgres_admin_url,
    span_exporter,
    telemetry,
)


@dataclass
class RunningIdentity:
    address: str
    channel: grpc.aio.Channel
    stub: IdentityServiceAsyncStub
    settings: IdentitySettings

    @property
    def nats_url(self) -> str:
        return self.settings.nats.url


@pytest.fixture
def identity_settings(database_url: str, nats: EmbeddedNats) -> IdentitySettings:
    return replace(
        IdentitySettings(),
        grpc=GrpcServerSettings(port=0, shutdown_grace_seconds=2.0),
        database=DatabaseSettings(url=database_url),
        nats=NatsSettings(url=nats.url),
    )


@pytest.fixture
async def identity(
    identity_settings: IdentitySettings, telemetry: Telemetry
) -> AsyncIterator[RunningIdentity]:
    async def start(stop: asyncio.Event, on_serving: OnServing) -> None:
        await serve(identity_settings, stop=stop, telemetry=telemetry, on_serving=on_serving)

    async with service_running(start) as server:
        channel = create_channel(server.address, GrpcClientSettings(), telemetry=telemetry)
        try:
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            yield RunningIdentity(server.address, channel, stub, identity_settings)
        finally:
            await channel.close(grace=None)


async def bus_messages(
    nats_url: str, subject: str, count: int, *, timeout: float = 10.0
) -> list[Any]:
    """The first `count` messages on `subject` (from the start of its stream)."""
    client = await connect_nats(NatsSettings(url=nats_url), name="test-reader")
    try:
        stream = await client.jetstream().find_stream_name_by_subject(subject)
        subscription = await client.jetstream().pull_subscribe(
            subject, durable=f"reader-{uuid.uuid4().hex[:8]}", stream=stream
        )
        messages: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while len(messages) < count and asyncio.get_running_loop().time() < deadline:
            try:
                messages.extend(await subscription.fetch(count - len(messages), timeout=1))
            except TimeoutError:
                continue
        return messages
    finally:
        await client.close()


def request(
    *, email: str = "", phone: str = "", user_id: str = "", device_id: str = "",
    attributes: identity_pb2.PersonAttributes | None = None, probabilistic: bool = False,
    source: str = "crm",
) -> identity_pb2.ResolveIdentityRequest:
    return identity_pb2.ResolveIdentityRequest(
        identifiers=common_pb2.Identifiers(email=email, phone=phone, user_id=user_id,
                                           device_id=device_id),
        attributes=attributes,
        source_platform=source,
        allow_probabilistic=probabilistic,
    )
