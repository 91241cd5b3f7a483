from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import wrappers_pb2
from nats.aio.client import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from cdp_bus import (
    DurableConsumer,
    Inbox,
    NatsSettings,
    OutboxMessage,
    OutboxRelay,
    ReceivedEvent,
    SqlOutbox,
    connect_nats,
    ensure_streams,
)
from cdp_bus.subjects import IDENTITY_CREATED, dead_letter_subject
from cdp_db import Database, DatabaseSettings, UnitOfWork, apply_migrations, create_database_engine
from cdp_embedded import EmbeddedNats
from cdp_grpc import background
from cdp_telemetry import Telemetry
from cdp_testing import wait_until

SCHEMA = "bustest"
MIGRATIONS = Path(__file__).parent / "migrations"


@pytest.fixture
async def database(database_url: str, telemetry: Telemetry) -> AsyncIterator[Database]:
    engine = create_database_engine(DatabaseSettings(url=database_url))
    telemetry.instrument_engine(engine)
    await apply_migrations(engine, schema=SCHEMA, migrations_dir=MIGRATIONS)
    db = Database(engine)
    yield db
    await db.dispose()


@pytest.fixture
async def client(nats: EmbeddedNats) -> AsyncIterator[Client]:
    connection = await connect_nats(NatsSettings(url=nats.url), name="bus-test")
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


async def store_note(database: Database, outbox: SqlOutbox, note_id: str, *, commit: bool) -> None:
    async with UnitOfWork(database.sessions, messages=outbox) as uow:
        await uow.session.execute(
            text(f"INSERT INTO {SCHEMA}.notes (id, body) VALUES (:id, 'hello')"), {"id": note_id}
        )
        uow.publish(
            OutboxMessage.of_proto(
                IDENTITY_CREATED,
                wrappers_pb2.StringValue(value=note_id),
                source="/cdp/test",
                message_id=note_id,
            )
        )
        if commit:
            await uow.commit()


async def test_migrations_are_idempotent(database: Database) -> None:
    await apply_migrations(database.engine, schema=SCHEMA, migrations_dir=MIGRATIONS)
    async with database.engine.connect() as connection:
        version = await connection.scalar(text(f"SELECT version_num FROM {SCHEMA}.alembic_version"))
    assert version == "0001"


async def test_committed_messages_reach_a_durable_consumer_once_with_the_trace(
    database: Database, client: Client, telemetry: Telemetry, span_exporter: InMemorySpanExporter
) -> None:
    outbox = SqlOutbox(SCHEMA)
    js = client.jetstream()
    relay = OutboxRelay(database, outbox, js, tracer=telemetry.tracer("relay"))
    received: list[ReceivedEvent] = []

    async def handle(event: ReceivedEvent) -> None:
        received.append(event)

    consumer = DurableConsumer(
        js,
        stream="CDP_IDENTITY",
        durable="bus-test",
        subjects=[IDENTITY_CREATED],
        handler=handle,
        tracer=telemetry.tracer("consumer"),
    )
    with telemetry.tracer("test").start_as_current_span("request") as request_span:
        await store_note(database, outbox, "note-1", commit=True)
        await store_note(database, outbox, "note-2", commit=False)
    async with background(relay.run(), name="relay"), background(consumer.run(), name="c"):
        await wait_until(lambda: len(received) >= 1, message="delivery")
        # A relay that crashed after publishing re-sends; JetStream drops the duplicate.
        await js.publish(IDENTITY_CREATED, b"dup", headers={"Nats-Msg-Id": "note-1"})
        await store_note(database, outbox, "note-3", commit=True)
        await wait_until(lambda: len(received) >= 2, message="second delivery")
    assert [r.event.id for r in received] == ["note-1", "note-3"]
    assert wrappers_pb2.StringValue.FromString(received[0].event.data).value == "note-1"
    assert received[0].event.data_schema == "google.protobuf.StringValue"
    async with database.engine.connect() as connection:
        left = await connection.scalar(text(f"SELECT count(*) FROM {SCHEMA}.outbox"))
    assert left == 0
    trace_id = request_span.get_span_context().trace_id
    spans = [s for s in span_exporter.get_finished_spans() if s.context.trace_id == trace_id]
    by_kind = {s.kind: s for s in spans}
    assert {SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER} <= set(by_kind)
    assert by_kind[SpanKind.CLIENT].name == "INSERT"  # the SQL of the request
    producer, consumer_side = by_kind[SpanKind.PRODUCER], by_kind[SpanKind.CONSUMER]
    assert consumer_side.parent is not None
    assert consumer_side.parent.span_id == producer.context.span_id


async def test_relay_keeps_messages_while_nats_is_down_and_sends_them_after(
    database: Database, nats: EmbeddedNats, telemetry: Telemetry
) -> None:
    client = await connect_nats(NatsSettings(url=nats.url), name="bus-test")
    js = client.jetstream()
    await ensure_streams(js)
    outbox = SqlOutbox(SCHEMA)
    relay = OutboxRelay(
        database, outbox, js, tracer=telemetry.tracer("relay"), poll_interval=0.1, ack_timeout=0.5
    )
    nats.kill()
    await store_note(database, outbox, "while-down", commit=True)
    assert await relay.relay_once() == 0
    async with database.engine.connect() as connection:
        kept = await connection.scalar(text(f"SELECT count(*) FROM {SCHEMA}.outbox"))
    assert kept == 1
    nats.start()
    await wait_until(lambda: client.is_connected, timeout=20, message="reconnect")
    async with background(relay.run(), name="relay"):
        await wait_until(lambda: relay.published_total == 1, timeout=20, message="relay")
    # The client may also flush its reconnect buffer: the duplicate is dropped by id.
    info = await js.stream_info("CDP_IDENTITY")
    assert info.state.messages == 1
    await client.close()


async def test_a_failing_handler_is_retried_then_dead_lettered(
    client: Client, telemetry: Telemetry
) -> None:
    js = client.jetstream()
    attempts: list[int] = []

    async def always_fails(event: ReceivedEvent) -> None:
        attempts.append(event.delivery_attempt)
        raise RuntimeError("cannot apply for ada@example.com")

    consumer = DurableConsumer(
        js,
        stream="CDP_IDENTITY",
        durable="failing",
        subjects=[IDENTITY_CREATED],
        handler=always_fails,
        tracer=telemetry.tracer("consumer"),
        max_deliver=3,
        retry_delays=(0.05,),
    )
    message_id = str(uuid.uuid4())
    await js.publish(
        IDENTITY_CREATED,
        b"x",
        headers={
            "ce-id": message_id,
            "ce-type": IDENTITY_CREATED,
            "ce-source": "/t",
            "Nats-Msg-Id": message_id,
        },
    )
    dead = await js.pull_subscribe(
        dead_letter_subject("failing"), durable="dlq-reader", stream="CDP_DEADLETTER"
    )
    async with background(consumer.run(), name="consumer"):
        await wait_until(lambda: consumer.dead_lettered_total == 1, message="dead letter")
    (letter,) = await dead.fetch(1, timeout=5)
    assert attempts == [1, 2, 3]
    assert letter.headers is not None
    assert letter.headers["cdp-original-subject"] == IDENTITY_CREATED
    assert "example.com" not in letter.headers["cdp-dead-letter-reason"]
    assert letter.headers["ce-id"] == message_id


async def test_inbox_claims_each_message_once(database: Database) -> None:
    inbox = Inbox(SCHEMA)
    async with UnitOfWork(database.sessions) as uow:
        first = await inbox.claim_message(uow.session, "c", "m-1")
        again = await inbox.claim_message(uow.session, "c", "m-1")
        other_consumer = await inbox.claim_message(uow.session, "d", "m-1")
        await uow.commit()
    async with UnitOfWork(database.sessions) as uow:
        rolled_back = await inbox.claim_message(uow.session, "c", "m-2")
    async with UnitOfWork(database.sessions) as uow:
        after_rollback = await inbox.claim_message(uow.session, "c", "m-2")
        await uow.commit()
    assert (first, again, other_consumer) == (True, False, True)
    assert rolled_back and after_rollback
