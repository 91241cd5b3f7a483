from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import grpc
import pytest

from cdp.identity.v1 import identity_pb2_grpc
from cdp_bus import NatsSettings
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
