"""Events through the suite as a user runs it: `cdp up`, `cdp events publish`, the real
Segment SDK against the router's HTTP API, then storage, broadcast, the trigger on the
profile, the email-routed events at the Mailchimp sandbox, and a replay that changes nothing
where the events already arrived."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy
from segment.analytics.client import Client as SegmentClient

from cdp_cli.reflection_client import ReflectionClient

from .suite import RunningSuite, eventually, suite_up

EMAIL = "ada@example.com"
LIST_ID = "c0ffee0001"
# The key `cdp up` gives the sandbox (see cli/cdp_cli/services.py); it guards nothing.
SANDBOX_KEY = "0123456789abcdef0123456789abcdef-us1"
# The router's default write key for a local run: events from it have source "web".
WRITE_KEY = "cdp-local-write-key"


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[RunningSuite]:
    with suite_up(tmp_path, {"MAILCHIMP_ACTIVITY_INTERVAL_SECONDS": "0",
                             "CDP_EVENTS_BATCH_MAX_DELAY_SECONDS": "0.2"},
                  timeout=240) as running:
        yield running


def call(suite: RunningSuite, service: str, method: str, request: dict[str, Any]
         ) -> list[dict[str, Any]]:
    with grpc.insecure_channel(suite.address(service)) as channel:
        replies = ReflectionClient(channel).call(method, json.dumps(request))
        return [json.loads(reply) for reply in replies]


def member_events(suite: RunningSuite) -> list[str]:
    """The member's events in the sandbox, oldest first, read through its Mailchimp API."""
    member = hashlib.md5(EMAIL.encode()).hexdigest()
    request = urllib.request.Request(
        f"http://{suite.address('mailchimp_sandbox')}/3.0/lists/{LIST_ID}/members/{member}"
        "/events?count=1000",
        headers={"Authorization": "Basic "
                 + base64.b64encode(f"any:{SANDBOX_KEY}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as reply:
        events = json.loads(reply.read())["events"]
    return [str(e["name"]) for e in reversed(events)]


async def broadcast_ids(nats_url: str, subject: str) -> set[str]:
    """Event ids a JetStream subscriber of `subject` receives from the start of the stream."""
    client = await nats.connect(nats_url)
    seen: set[str] = set()
    try:
        subscription = await client.jetstream().pull_subscribe(
            subject, durable=None, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        while True:
            try:
                messages = await subscription.fetch(100, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                break
            for message in messages:
                seen.add((message.headers or {}).get("ce-id", ""))
                await message.ack()
    finally:
        await client.close()
    return seen


async def email_consumer_settled(nats_url: str) -> bool:
    """The connector's consumer of `cdp.routed.email.>` has applied everything on it."""
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().consumer_info("CDP_ROUTED", "mailchimp-email")
        stream = await client.jetstream().stream_info("CDP_ROUTED")
    finally:
        await client.close()
    return (info.num_pending == 0 and info.num_ack_pending == 0
            and info.delivered.stream_seq >= stream.state.last_seq)


def send_with_segment(suite: RunningSuite) -> list[Any]:
    errors: list[Any] = []
    client = SegmentClient(write_key=WRITE_KEY, host=f"http://127.0.0.1:"
                           f"{suite.env['CDP_EVENTS_HTTP_PORT']}", sync_mode=True,
                           on_error=lambda error, batch: errors.append(error))
    client.identify("u-ada", {"email": EMAIL, "firstName": "Ada"})
    client.track("u-ada", "Product Viewed", {"sku": "SKU-1", "price": 9.99})
    client.flush()
    return errors


def test_events_flow_from_the_cli_and_a_segment_sdk_to_store_stream_profile_and_mailchimp(
    suite: RunningSuite,
) -> None:
    nats_url = f"nats://127.0.0.1:{suite.env['CDP_EMBEDDED_NATS_PORT']}"
    (pushed,) = call(suite, "mailchimp", "cdp.connector.v1.ConnectorService/PushProfiles",
                     {"profiles": [{"customerId": "crm-ada", "email": EMAIL,
                                    "payload": {"merge_fields": {"FNAME": "Ada"}}}]})
    assert pushed["results"] == [{"key": "crm-ada", "success": True}]

    published = suite.cdp("events", "publish", "--type", "order.completed",
                          "--source", "ecommerce", "--id", "e2e-order-1", "--email", EMAIL,
                          "--user-id", "u-ada",
                          "--properties", '{"order_id": "o-1", "total": 120.5}')
    assert published.returncode == 0, published.stderr
    accepted = json.loads(published.stdout)
    assert accepted["status"] == "PUBLISH_STATUS_ACCEPTED"
    assert "email" in accepted["targets"]
    customer = accepted["customerId"]

    assert send_with_segment(suite) == []

    # Stored: all three events under one customer (identify tied the user id to the email).
    (found,) = call(suite, "event_router", "cdp.events.v1.EventRouterService/GetEvent",
                    {"eventId": "e2e-order-1"})
    assert found["event"]["customerId"] == customer
    assert found["event"]["properties"]["total"] == 120.5

    def customer_events() -> list[dict[str, Any]]:
        return call(suite, "event_router", "cdp.events.v1.EventRouterService/ListEvents",
                    {"filter": {"customerId": customer}})

    listed = eventually(customer_events, lambda found: len(found) == 3,
                        message="the customer's three events")
    assert sorted(e["event"]["type"] for e in listed) == [
        "order.completed", "product.viewed", "user.identified"]
    assert {e["event"]["source"] for e in listed} == {"ecommerce", "web"}

    # Broadcast: a JetStream subscriber sees each on cdp.events.<type>.
    assert "e2e-order-1" in eventually(
        lambda: asyncio.run(broadcast_ids(nats_url, "cdp.events.order.completed")),
        bool, message="the order on cdp.events.order.completed")
    viewed = {e["event"]["id"] for e in listed if e["event"]["type"] == "product.viewed"}
    assert viewed <= asyncio.run(broadcast_ids(nats_url, "cdp.events.product.viewed"))

    # The orders trigger projected the order onto the profile.
    def profile() -> dict[str, Any]:
        (reply,) = call(suite, "profile", "cdp.profile.v1.ProfileService/GetUnifiedProfile",
                        {"customerId": customer})
        return dict(reply["profile"].get("attributes", {}))

    attributes = eventually(profile, lambda a: a.get("ecommerce", {}).get("order_count") == 1,
                            message="ecommerce.order_count on the profile")
    assert attributes["customer"]["lifetime_value"] == 120.5

    # Routed to email: both reached Mailchimp as member events, the SDK's track (a user id
    # only) through the customer's primary email from identity.
    events = eventually(lambda: member_events(suite),
                        lambda names: sorted(names) == ["order_completed", "product_viewed"],
                        message="member events in the Mailchimp sandbox")
    assert events[0] == "order_completed"

    # Replay to email: JetStream carries the copies, the connector applies none twice.
    replayed = suite.cdp("events", "replay", "--target", "email", "--customer-id", customer,
                         "--type", "order.completed", "--type", "product.viewed")
    assert replayed.returncode == 0, replayed.stderr
    assert int(json.loads(replayed.stdout)["eventsReplayed"]) == 2
    eventually(lambda: asyncio.run(email_consumer_settled(nats_url)), bool,
               message="the connector consumed the replay")
    assert sorted(member_events(suite)) == ["order_completed", "product_viewed"]

    failed = suite.cdp("events", "publish", "--type", "Order Completed", "--source", "web",
                       "--user-id", "u-ada")
    assert failed.returncode != 0
    assert "type" in failed.stderr

    code, output = suite.stop()
    assert code == 0, output
