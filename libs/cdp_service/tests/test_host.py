"""A service hosted by `hosting`, against real PostgreSQL, a real nats-server and real gRPC."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy import text

from cdp_bus import NatsSettings, OutboxMessage, SqlOutbox, connect_nats
from cdp_bus.subjects import IDENTITY_CREATED
from cdp_db import Database, DatabaseSettings, UnitOfWork
from cdp_embedded import EmbeddedNats, to_asyncpg_dsn
from cdp_errors import Unavailable
from cdp_grpc import GrpcClientSettings, GrpcServerSettings, ServiceRegistration, create_channel
from cdp_service import ServiceHost, hosting
from cdp_telemetry import Telemetry, TelemetrySettings
from cdp_testing import wait_until
from cdp_testing.services import OnServing, service_running

SCHEMA = "hosttest"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = "cdp.test.v1.NoteService"
Note = wrappers_pb2.StringValue


@dataclass
class Notes:
    """A one-RPC service, `Store`: writes a note and announces it through the outbox.

    `before_commit` runs inside the call before it commits (a test sets the stop event there,
    so that the commit lands while the service is shutting down).
    """

    database: Database | None = None
    outbox: SqlOutbox | None = None
    before_commit: Callable[[], None] = lambda: None
    stored: list[str] = field(default_factory=list)

    async def store(self, request: Note, _context: Any) -> Note:
        assert self.database is not None and self.outbox is not None
        self.before_commit()
        async with UnitOfWork(self.database.sessions, messages=self.outbox) as uow:
            await uow.session.execute(
                text(f"INSERT INTO {SCHEMA}.notes (id) VALUES (:id)"), {"id": request.value}
            )
            uow.publish(
                OutboxMessage.of_proto(
                    IDENTITY_CREATED, request, source="/cdp/test", message_id=request.value
                )
            )
            await uow.commit()
        self.stored.append(request.value)
        return request

    def registration(self) -> ServiceRegistration:
        def add(_servicer: Any, server: grpc.aio.Server) -> None:
            handler = grpc.unary_unary_rpc_method_handler(
                self.store, Note.FromString, Note.SerializeToString
            )
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(SERVICE, {"Store": handler}),)
            )

        return ServiceRegistration(add_to_server=add, servicer=self, full_name=SERVICE)


def store_call(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/Store",
        request_serializer=Note.SerializeToString,
        response_deserializer=Note.FromString,
    )


async def open_database(host: ServiceHost, database_url: str) -> Database:
    return await host.open_database(
        DatabaseSettings(url=database_url), schema=SCHEMA, migrations=MIGRATIONS, asyncpg_pool=True
    )


def notes_service(
    notes: Notes, database_url: str, nats_url: str, telemetry: Telemetry
) -> Callable[[asyncio.Event, OnServing], Coroutine[Any, Any, None]]:
    """A `serve` written the way every service's is."""

    async def serve(stop: asyncio.Event, on_serving: OnServing) -> None:
        async with hosting("cdp-host-test", TelemetrySettings(), telemetry=telemetry,
                           stop=stop) as host:
            notes.database = await open_database(host, database_url)
            await host.connect_nats(NatsSettings(url=nats_url))
            notes.outbox = await host.start_outbox_relay(SCHEMA)
            await host.serve(
                GrpcServerSettings(port=0, shutdown_grace_seconds=10.0),
                notes.registration(),
                default_port=0,
                on_serving=on_serving,
            )

    return serve


async def published_ids(client: Client) -> list[str]:
    """The note ids of every message on IDENTITY_CREATED, from the start of its stream."""
    # No acks: a reader, not a worker.
    subscription = await client.jetstream().pull_subscribe(
        IDENTITY_CREATED,
        durable=f"r{uuid.uuid4().hex[:10]}",
        stream="CDP_IDENTITY",
        config=ConsumerConfig(ack_policy=AckPolicy.NONE),
    )
    try:
        messages = await subscription.fetch(100, timeout=0.5)
    except (TimeoutError, NatsTimeoutError):
        return []
    finally:
        await subscription.unsubscribe()
    return [Note.FromString(message.data).value for message in messages]


async def database_sessions(database_url: str) -> int:
    """Connections to the test database other than this probe's own."""
    dsn, kwargs = to_asyncpg_dsn(database_url)
    probe = await asyncpg.connect(dsn, **kwargs)
    try:
        count: int = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await probe.close()


async def test_health_turns_serving_and_committed_messages_are_relayed_to_nats(
    database_url: str, nats: EmbeddedNats, telemetry: Telemetry
) -> None:
    notes = Notes()
    reader = await connect_nats(NatsSettings(url=nats.url), name="test-reader")
    try:
        async with service_running(
            notes_service(notes, database_url, nats.url, telemetry)
        ) as server:
            async with create_channel(server.address, GrpcClientSettings()) as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE)
                )
                note = str(uuid.uuid4())
                await store_call(channel)(Note(value=note))

            async def relayed() -> bool:
                return note in await published_ids(reader)

            await wait_until(relayed, message="the note's message on NATS")
    finally:
        await reader.close()
    assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_what_a_call_commits_while_the_service_stops_reaches_nats_before_it_closes(
    database_url: str, nats: EmbeddedNats, telemetry: Telemetry
) -> None:
    notes = Notes()
    stop = asyncio.Event()
    notes.before_commit = stop.set
    serving: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def on_serving(server: Any) -> None:
        serving.set_result(server)

    serve = asyncio.create_task(notes_service(notes, database_url, nats.url, telemetry)(
        stop, on_serving))
    server = await asyncio.wait_for(serving, timeout=60)
    note = str(uuid.uuid4())
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        answered = await store_call(channel)(Note(value=note))
    await asyncio.wait_for(serve, timeout=30)

    reader = await connect_nats(NatsSettings(url=nats.url), name="test-reader")
    try:
        published = await published_ids(reader)
    finally:
        await reader.close()
    dsn, kwargs = to_asyncpg_dsn(database_url)
    probe = await asyncpg.connect(dsn, **kwargs)
    try:
        waiting = await probe.fetchval(f"SELECT count(*) FROM {SCHEMA}.outbox")
    finally:
        await probe.close()
    assert answered.value == note
    assert published == [note]
    assert waiting == 0
    # The engine and the asyncpg pool were closed on the way out.
    assert await database_sessions(database_url) == 0
    assert notes.database is not None
    with pytest.raises(RuntimeError):
        notes.database.pool  # noqa: B018 (the pool is gone)


async def test_readiness_follows_what_the_host_opened(
    database_url: str, nats: EmbeddedNats, telemetry: Telemetry
) -> None:
    async with hosting("cdp-host-test", TelemetrySettings(), telemetry=telemetry,
                       stop=asyncio.Event()) as host:
        await open_database(host, database_url)
        await host.readiness()  # the database alone: a service that uses no NATS is ready
        await host.connect_nats(NatsSettings(url=nats.url))
        await host.readiness()
        nats.kill()

        async def unready() -> bool:
            try:
                await host.readiness()
            except Unavailable:
                return True
            return False

        await wait_until(unready, timeout=15, message="readiness failing without NATS")
