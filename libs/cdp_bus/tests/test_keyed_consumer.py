from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from cdp_bus import NatsSettings, ReceivedEvent, connect_nats, ensure_streams
from cdp_bus.keyed import KeyedConsumer
from cdp_embedded import EmbeddedNats
from cdp_grpc import background
from cdp_telemetry import Telemetry
from cdp_testing import wait_until

SUBJECT = "cdp.routed.email.page.viewed"


@pytest.fixture
async def client(nats: EmbeddedNats) -> AsyncIterator[Client]:
    connection = await connect_nats(NatsSettings(url=nats.url), name="keyed-test")
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


async def publish(client: Client, customer: str, number: int) -> None:
    message_id = f"{customer}-{number}"
    await client.jetstream().publish(SUBJECT, str(number).encode(), headers={
        "ce-id": message_id, "ce-type": "page.viewed", "ce-source": "/t",
        "ce-subject": customer, "Nats-Msg-Id": message_id})


async def test_each_customer_keeps_order_and_a_failing_one_blocks_nobody_else(
    client: Client, telemetry: Telemetry
) -> None:
    applied: dict[str, list[int]] = defaultdict(list)
    failures_left = {"stuck": 3}

    async def deliver(event: ReceivedEvent) -> None:
        customer = event.event.subject
        if failures_left.get(customer, 0) > 0:
            failures_left[customer] -= 1
            raise ConnectionError("target down for this customer")
        applied[customer].append(int(event.event.data))

    consumer = KeyedConsumer(
        client.jetstream(), stream="CDP_ROUTED", durable="keyed-test", subjects=[SUBJECT],
        handler=deliver, tracer=telemetry.tracer("t"), retry_delays=(0.3,),
    )
    for number in range(5):
        for customer in ("stuck", "alice", "bob"):
            await publish(client, customer, number)
    async with background(consumer.run(), name="keyed"):
        # Everyone else is delivered while the stuck customer is still failing.
        await wait_until(lambda: len(applied["alice"]) == 5 and len(applied["bob"]) == 5,
                         message="healthy customers")
        assert applied["stuck"] == []
        await wait_until(lambda: len(applied["stuck"]) == 5, message="stuck customer")
    assert applied == {"alice": [0, 1, 2, 3, 4], "bob": [0, 1, 2, 3, 4],
                       "stuck": [0, 1, 2, 3, 4]}


async def test_a_message_failing_every_attempt_is_dead_lettered_and_its_key_moves_on(
    client: Client, telemetry: Telemetry
) -> None:
    applied: list[int] = []

    async def deliver(event: ReceivedEvent) -> None:
        if int(event.event.data) == 1:
            raise ValueError("this one can never be delivered")
        applied.append(int(event.event.data))

    consumer = KeyedConsumer(
        client.jetstream(), stream="CDP_ROUTED", durable="keyed-dlq", subjects=[SUBJECT],
        handler=deliver, tracer=telemetry.tracer("t"), retry_delays=(0.05,), max_attempts=3,
    )
    for number in range(3):
        await publish(client, "carol", number)
    async with background(consumer.run(), name="keyed"):
        await wait_until(lambda: applied == [0, 2], message="delivery past the dead letter")
    assert consumer.dead_lettered_total == 1


async def test_unacknowledged_messages_come_back_in_order_after_a_restart(
    client: Client, telemetry: Telemetry
) -> None:
    applied: list[int] = []
    gate = asyncio.Event()

    async def deliver(event: ReceivedEvent) -> None:
        if int(event.event.data) >= 2 and not gate.is_set():
            raise ConnectionError("not yet")
        applied.append(int(event.event.data))

    def consumer() -> KeyedConsumer:
        return KeyedConsumer(client.jetstream(), stream="CDP_ROUTED", durable="keyed-restart",
                             subjects=[SUBJECT], handler=deliver,
                             tracer=telemetry.tracer("t"), retry_delays=(0.05,),
                             ack_wait_seconds=1.0)

    for number in range(5):
        await publish(client, "dave", number)
    async with background(consumer().run(), name="first"):
        await wait_until(lambda: applied == [0, 1], message="first two")
    gate.set()
    async with background(consumer().run(), name="second"):
        await wait_until(lambda: applied == [0, 1, 2, 3, 4], timeout=20,
                         message="the rest, in order, after the restart")
