from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from cdp.events.v1 import events_pb2_grpc
from cdp.identity.v1 import identity_pb2_grpc
from cdp.profile.v1 import profile_pb2_grpc
from cdp_bus import NatsSettings, connect_nats
from cdp_db import DatabaseSettings
from cdp_embedded import EmbeddedNats
from cdp_event_router.bootstrap import RunningRouter, serve
from cdp_event_router.settings import EventRouterSettings
from cdp_grpc import GrpcClientSettings, GrpcServerSettings, create_channel
from cdp_settings import Secret
from cdp_telemetry import Telemetry
from cdp_testing.fixtures import (  # noqa: F401
    database_url,
    nats,
    postgres_admin_url,
    span_exporter,
    telemetry,
)

from .fakes import FakeIdentity, FakeProfile

if TYPE_CHECKING:
    from cdp.events.v1.events_pb2_grpc import EventRouterServiceAsyncStub

WRITE_KEY = "test-write-key"


@dataclass
class Peers:
    identity: FakeIdentity
    profile: FakeProfile
    identity_addr: str
    profile_addr: str


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    identity, profile = FakeIdentity(), FakeProfile()  # type: ignore[abstract]
    server = grpc.aio.server()
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(identity, server)
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(profile, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Peers(identity, profile, f"127.0.0.1:{port}", f"127.0.0.1:{port}")
    await server.stop(None)


@pytest.fixture
def router_settings(database_url: str, nats: EmbeddedNats, peers: Peers) -> EventRouterSettings:
    return replace(
        EventRouterSettings(),
        grpc=GrpcServerSettings(port=0, shutdown_grace_seconds=2.0),
        database=DatabaseSettings(url=database_url),
        nats=NatsSettings(url=nats.url),
        http_port=0,
        write_keys=Secret(f"{WRITE_KEY}=web"),
        identity_addr=peers.identity_addr,
        profile_addr=peers.profile_addr,
        batch_max_delay_seconds=0.2,
    )


@dataclass
class Router:
    stub: EventRouterServiceAsyncStub
    http_url: str
    settings: EventRouterSettings
    running: RunningRouter


async def start_router(settings: EventRouterSettings, telemetry: Telemetry
                       ) -> tuple[asyncio.Task[None], asyncio.Event, RunningRouter]:
    stop = asyncio.Event()
    started: asyncio.Future[RunningRouter] = asyncio.get_running_loop().create_future()

    async def on_running(running: RunningRouter) -> None:
        started.set_result(running)

    task = asyncio.create_task(serve(settings, stop=stop, telemetry=telemetry,
                                     on_running=on_running))
    either: list[asyncio.Future[Any]] = [task, started]
    await asyncio.wait(either, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    return task, stop, started.result()


@pytest.fixture
async def router(router_settings: EventRouterSettings,
                 telemetry: Telemetry) -> AsyncIterator[Router]:
    task, stop, running = await start_router(router_settings, telemetry)
    channel = create_channel(running.server.address, GrpcClientSettings(), telemetry=telemetry)
    try:
        yield Router(events_pb2_grpc.EventRouterServiceStub(channel),
                     f"http://127.0.0.1:{running.http_port}", router_settings, running)
    finally:
        await channel.close(None)
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def stream_messages(nats_url: str, subject: str, *, timeout: float = 1.0) -> list[Any]:
    """Every message currently on `subject`, from the start of its stream."""
    client = await connect_nats(NatsSettings(url=nats_url), name="test-reader")
    try:
        js = client.jetstream()
        stream = await js.find_stream_name_by_subject(subject)
        # No acks: a reader, not a worker (and no max_ack_pending ceiling on what it sees).
        subscription = await js.pull_subscribe(
            subject, durable=f"r{uuid.uuid4().hex[:10]}", stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        messages: list[Any] = []
        while True:
            try:
                batch = await subscription.fetch(500, timeout=timeout)
            except TimeoutError:
                return messages
            messages.extend(batch)
    finally:
        await client.close()

