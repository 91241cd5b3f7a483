"""Events routed to the `email` role: consumed from a real JetStream, delivered to the sandbox
through the real SDK, in order per customer, once each, one failing customer blocking nobody."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.struct_pb2 import Struct
from nats.aio.client import Client

from cdp.common.v1 import common_pb2
from cdp.connector.v1 import connector_pb2
from cdp.events.v1 import events_pb2
from cdp_bus import NatsSettings, connect_nats, ensure_streams
from cdp_embedded import EmbeddedNats
from cdp_telemetry import Telemetry
from cdp_testing import wait_until

from .conftest import (
    Peers,
    RunningConnector,
    RunningSandbox,
    connector_settings,
    run_connector,
)
from .test_connector import md5, profile, push

DURABLE = "mailchimp-email"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def bus(nats: EmbeddedNats) -> AsyncIterator[Client]:
    client = await connect_nats(NatsSettings(url=nats.url), name="router-stand-in")
    await ensure_streams(client.jetstream())
    try:
        yield client
    finally:
        await client.close()


async def route(client: Client, event_id: str, customer: str, number: int, *,
                email: str = "", event_type: str = "page.viewed", resend: int = 0) -> None:
    """Publishes what the router's relay publishes for an event routed to `email`."""
    properties = Struct()
    properties.update({"n": number, "path": f"/p/{number}"})
    event = events_pb2.Event(id=event_id, type=event_type, source="web", customer_id=customer,
                             identifiers=common_pb2.Identifiers(email=email),
                             properties=properties)
    occurred = START + timedelta(seconds=number)
    event.timestamp.FromDatetime(occurred)
    # A re-send (a replay) is a new message for JetStream: only the consumer can drop it.
    message_id = f"{event_id}:email" + (f":replay{resend}" if resend else "")
    await client.jetstream().publish(f"cdp.routed.email.{event_type}", event.SerializeToString(),
                                     headers={
        "ce-specversion": "1.0", "ce-id": event_id, "ce-type": event_type,
        "ce-source": "/cdp/sources/web", "ce-time": occurred.isoformat(),
        "ce-subject": customer, "ce-dataschema": "cdp.events.v1.Event",
        "content-type": "application/protobuf", "Nats-Msg-Id": message_id,
        "cdp-target": "email",
    })


def delivered(sandbox: RunningSandbox, n: int) -> list[int]:
    """The `n` property of each event person<n> has in the sandbox, in arrival order."""
    events = sandbox.audience.events.get(md5(f"person{n}@example.com"), [])
    return [int(e["properties"]["n"]) for e in events]


async def settled(client: Client) -> bool:
    info = await client.jetstream().consumer_info("CDP_ROUTED", DURABLE)
    return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.fixture
async def consuming(
    database_url: str, sandbox: RunningSandbox, peers: Peers, telemetry: Telemetry,
    nats: EmbeddedNats,
) -> AsyncIterator[RunningConnector]:
    settings = connector_settings(database_url, sandbox, peers, nats_url=nats.url,
                                  breaker_failures=1000)
    async with run_connector(settings, telemetry) as running:
        yield running


async def test_each_customer_gets_its_events_in_order_while_one_failing_member_waits_alone(
    consuming: RunningConnector, sandbox: RunningSandbox, peers: Peers, nats: EmbeddedNats
) -> None:
    await consuming.stub.PushProfiles(push(*(profile(n) for n in range(1, 5))))
    await sandbox.control("POST", "/_sandbox/faults",
                          {"failing_members": [md5("person2@example.com")]})
    # Customer 3's events name no email: the connector asks identity for it.
    peers.identity.primary_emails["c-3"] = "person3@example.com"
    async with bus(nats) as client:
        for number in range(5):
            for n in range(1, 5):
                await route(client, f"e-{n}-{number}", f"c-{n}", number,
                            email="" if n == 3 else f"person{n}@example.com")
        await wait_until(lambda: all(delivered(sandbox, n) == [0, 1, 2, 3, 4]
                                     for n in (1, 3, 4)),
                         timeout=30, message="healthy customers' events, in order")
        assert delivered(sandbox, 2) == []
        await sandbox.control("POST", "/_sandbox/faults", {"failing_members": []})
        await wait_until(lambda: delivered(sandbox, 2) == [0, 1, 2, 3, 4], timeout=30,
                         message="the failing customer's events once it recovered, in order")
        await wait_until(lambda: settled(client), timeout=20, message="all acknowledged")
    failed = await consuming.stub.ListFailedOperations(
        connector_pb2.ListFailedOperationsRequest(include_permanent=True))
    assert failed.total == 0


async def test_a_redelivered_or_replayed_event_is_applied_once(
    consuming: RunningConnector, sandbox: RunningSandbox, nats: EmbeddedNats
) -> None:
    await consuming.stub.PushProfiles(push(profile(1)))
    async with bus(nats) as client:
        for number in range(3):
            await route(client, f"r-{number}", "c-1", number, email="person1@example.com")
        await wait_until(lambda: delivered(sandbox, 1) == [0, 1, 2], timeout=30,
                         message="first deliveries")
        for number in range(3):
            await route(client, f"r-{number}", "c-1", number, email="person1@example.com",
                        resend=1)
        await route(client, "r-3", "c-1", 3, email="person1@example.com")
        await wait_until(lambda: delivered(sandbox, 1) == [0, 1, 2, 3], timeout=30,
                         message="the new event after the replayed ones")
        await wait_until(lambda: settled(client), timeout=20, message="all acknowledged")
    assert delivered(sandbox, 1) == [0, 1, 2, 3]


async def test_events_mailchimp_refuses_for_good_are_kept_as_failed_operations(
    consuming: RunningConnector, sandbox: RunningSandbox, nats: EmbeddedNats
) -> None:
    await consuming.stub.PushProfiles(push(profile(1)))
    async with bus(nats) as client:
        # Not a member of the audience; no email at all (identity knows none); then a good one.
        await route(client, "x-stranger", "c-9", 0, email="stranger@example.com")
        await route(client, "x-no-email", "c-8", 0)
        await route(client, "x-good", "c-1", 7, email="person1@example.com")
        await wait_until(lambda: delivered(sandbox, 1) == [7], timeout=30,
                         message="the deliverable event")
        await wait_until(lambda: settled(client), timeout=20, message="all acknowledged")
    failed = await consuming.stub.ListFailedOperations(
        connector_pb2.ListFailedOperationsRequest(include_permanent=True))
    by_event = {op.subject_id: op for op in failed.operations}
    assert set(by_event) == {"x-stranger", "x-no-email"}
    assert all(op.permanent and op.operation == "deliver_event" for op in by_event.values())
    assert "not a member" in by_event["x-stranger"].error
    assert "email" in by_event["x-no-email"].error
    assert "stranger@example.com" not in by_event["x-stranger"].error


async def test_a_customer_failing_past_its_attempts_is_kept_for_retry_and_the_lane_moves_on(
    database_url: str, sandbox: RunningSandbox, peers: Peers, telemetry: Telemetry,
    nats: EmbeddedNats,
) -> None:
    settings = connector_settings(database_url, sandbox, peers, nats_url=nats.url,
                                  routed_attempts=2, breaker_failures=1000, retry_attempts=1)
    async with run_connector(settings, telemetry) as running, bus(nats) as client:
        await running.stub.PushProfiles(push(profile(1)))
        await sandbox.control("POST", "/_sandbox/faults",
                              {"failing_members": [md5("person1@example.com")]})
        for number in range(2):
            await route(client, f"k-{number}", "c-1", number, email="person1@example.com")
        await wait_until(lambda: settled(client), timeout=30,
                         message="both events given up on and acknowledged")
        failed = await running.stub.ListFailedOperations(
            connector_pb2.ListFailedOperationsRequest())
        assert sorted(op.subject_id for op in failed.operations) == ["k-0", "k-1"]
        assert not any(op.permanent for op in failed.operations)
        await sandbox.control("POST", "/_sandbox/faults", {"failing_members": []})
        retried = await running.stub.RetryFailedOperations(
            connector_pb2.RetryFailedOperationsRequest())
        assert retried.succeeded == 2
    assert sorted(delivered(sandbox, 1)) == [0, 1]


async def test_events_routed_while_nats_restarts_are_delivered_once_it_is_back(
    consuming: RunningConnector, sandbox: RunningSandbox, nats: EmbeddedNats
) -> None:
    await consuming.stub.PushProfiles(push(profile(1)))
    async with bus(nats) as client:
        await route(client, "n-0", "c-1", 0, email="person1@example.com")
        await wait_until(lambda: delivered(sandbox, 1) == [0], timeout=30,
                         message="delivery before the restart")
    nats.kill()
    nats.start()
    async with bus(nats) as client:
        for number in range(1, 4):
            await route(client, f"n-{number}", "c-1", number, email="person1@example.com")
        await wait_until(lambda: delivered(sandbox, 1) == [0, 1, 2, 3], timeout=40,
                         message="deliveries after NATS came back")
        await wait_until(lambda: settled(client), timeout=20, message="all acknowledged")
