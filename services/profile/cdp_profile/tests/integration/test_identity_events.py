from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import json_format, wrappers_pb2
from nats.aio.client import Client
from nats.js import JetStreamContext

from cdp.identity.v1 import identity_events_pb2
from cdp.profile.v1 import profile_events_pb2, profile_pb2
from cdp_bus import NatsSettings, connect_nats
from cdp_bus.subjects import (
    IDENTITY_FORGOTTEN,
    IDENTITY_MERGED,
    IDENTITY_UNMERGED,
    PROFILE_DELETED,
    dead_letter_subject,
)
from cdp_embedded import EmbeddedNats
from cdp_profile.entrypoints.identity_consumer import CONSUMER, STREAM
from cdp_testing import eventually, wait_until

from .conftest import RunningProfile
from .helpers import fragment, ingest, publish_event


@pytest.fixture
async def bus(nats: EmbeddedNats, profile: RunningProfile) -> AsyncIterator[JetStreamContext]:
    client: Client = await connect_nats(NatsSettings(url=nats.url), name="identity-stand-in")
    try:
        yield client.jetstream()
    finally:
        await client.close()


async def attributes(profile: RunningProfile, customer: str) -> dict[str, object]:
    response = await profile.stub.GetUnifiedProfile(
        profile_pb2.GetUnifiedProfileRequest(customer_id=customer)
    )
    found: dict[str, object] = json_format.MessageToDict(response.profile.attributes)
    return found


async def owned_by(profile: RunningProfile, customer: str) -> int:
    count: int = await profile.database.fetchval(
        "SELECT count(*) FROM profile.fragments WHERE customer_id = $1", uuid.UUID(customer)
    )
    return count


async def handled(js: JetStreamContext, count: int) -> None:
    async def done() -> bool:
        info = await js.consumer_info(STREAM, CONSUMER)
        return info.delivered.stream_seq >= count and info.num_ack_pending == 0

    await wait_until(done, timeout=20, message=f"{count} identity events handled")


@pytest.fixture
async def two_customers(profile: RunningProfile) -> tuple[str, str]:
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    await profile.stub.IngestProfileFragment(
        ingest(
            fragment(
                "crm",
                {"user": {"firstName": "Ada", "tags": ["vip"]}},
                customer_id=survivor,
                hours_ago=4,
            )
        )
    )
    await profile.stub.IngestProfileFragment(
        ingest(
            fragment(
                "ecommerce",
                {"user": {"tags": ["buyer"]}, "customer": {"totalSpent": 80}},
                customer_id=merged,
                hours_ago=2,
            )
        )
    )
    return survivor, merged


def merged_event(survivor: str, merged: str) -> identity_events_pb2.CustomersMerged:
    return identity_events_pb2.CustomersMerged(
        merge_id=str(uuid.uuid4()), survivor_customer_id=survivor, merged_customer_id=merged
    )


async def test_a_merge_moves_the_losers_fragments_to_the_survivor_and_rebuilds_it(
    profile: RunningProfile, bus: JetStreamContext, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    await publish_event(bus, IDENTITY_MERGED, merged_event(survivor, merged))
    merged_view = await eventually(
        lambda: attributes(profile, survivor),
        lambda found: "customer" in found,
        timeout=20,
        message="the survivor's rebuilt profile",
    )
    assert merged_view == {
        "user": {"firstName": "Ada", "tags": ["vip", "buyer"]},
        "customer": {"totalSpent": 80.0},
    }
    assert await owned_by(profile, survivor) == 2 and await owned_by(profile, merged) == 0
    assert await attributes(profile, merged) == merged_view
    subscription = await bus.pull_subscribe(
        PROFILE_DELETED, durable="deleted-reader", stream="CDP_PROFILE"
    )
    (message,) = await subscription.fetch(1, timeout=10)
    deleted = profile_events_pb2.ProfileDeleted.FromString(message.data)
    assert (deleted.customer_id, deleted.merged_into_customer_id) == (merged, survivor)


async def test_an_unmerge_splits_the_fragments_back_to_their_customers(
    profile: RunningProfile, bus: JetStreamContext, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    before = await attributes(profile, survivor), await attributes(profile, merged)
    merge = merged_event(survivor, merged)
    await publish_event(bus, IDENTITY_MERGED, merge)
    await publish_event(
        bus,
        IDENTITY_UNMERGED,
        identity_events_pb2.CustomersUnmerged(
            merge_id=merge.merge_id, survivor_customer_id=survivor, restored_customer_id=merged
        ),
    )
    await handled(bus, 2)
    assert (await attributes(profile, survivor), await attributes(profile, merged)) == before
    assert await owned_by(profile, survivor) == 1 and await owned_by(profile, merged) == 1


async def test_forgetting_a_customer_deletes_everything_about_it(
    profile: RunningProfile, bus: JetStreamContext, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    await publish_event(bus, IDENTITY_MERGED, merged_event(survivor, merged))
    await publish_event(
        bus,
        IDENTITY_FORGOTTEN,
        identity_events_pb2.CustomerForgotten(customer_id=survivor, merged_customer_ids=[merged]),
    )
    await handled(bus, 2)
    for customer in (survivor, merged):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await attributes(profile, customer)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await profile.count("fragments") == 0
    assert await profile.count("field_states") == 0
    leftover = await profile.database.fetchval(
        "SELECT count(*) FROM profile.profiles WHERE attributes <> '{}'::jsonb"
    )
    assert leftover == 0
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await profile.stub.IngestProfileFragment(
            ingest(fragment("crm", {"user": {"firstName": "Ada"}}, customer_id=survivor))
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_event_delivered_twice_is_applied_once(
    profile: RunningProfile, bus: JetStreamContext, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    merge = merged_event(survivor, merged)
    merge_id = await publish_event(bus, IDENTITY_MERGED, merge)
    await publish_event(
        bus,
        IDENTITY_UNMERGED,
        identity_events_pb2.CustomersUnmerged(
            merge_id=merge.merge_id, survivor_customer_id=survivor, restored_customer_id=merged
        ),
    )
    # The same event again, past JetStream's duplicate check (as a relay restarted after the
    # duplicate window would send it): the inbox must drop it.
    await publish_event(bus, IDENTITY_MERGED, merge, event_id=merge_id, msg_id=str(uuid.uuid4()))
    await handled(bus, 3)
    assert await owned_by(profile, merged) == 1
    claimed = await profile.database.fetchval(
        "SELECT count(*) FROM profile.processed_messages WHERE consumer = $1", CONSUMER
    )
    assert claimed == 2


async def test_an_unreadable_identity_event_is_dead_lettered_at_once(
    profile: RunningProfile, bus: JetStreamContext
) -> None:
    await publish_event(bus, IDENTITY_MERGED, wrappers_pb2.StringValue(value="x" * 40))
    subscription = await bus.pull_subscribe(
        dead_letter_subject(CONSUMER), durable="dlq-reader", stream="CDP_DEADLETTER"
    )
    (message,) = await subscription.fetch(1, timeout=20)
    assert (message.headers or {})["cdp-attempts"] == "1"
    assert "PoisonMessage" in (message.headers or {})["cdp-dead-letter-reason"]


async def test_an_unmerge_that_overtakes_its_merge_keeps_the_customers_apart(
    profile: RunningProfile, bus: JetStreamContext, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    merge = merged_event(survivor, merged)
    await publish_event(
        bus,
        IDENTITY_UNMERGED,
        identity_events_pb2.CustomersUnmerged(
            merge_id=merge.merge_id, survivor_customer_id=survivor, restored_customer_id=merged
        ),
    )
    await publish_event(bus, IDENTITY_MERGED, merge)
    await handled(bus, 2)
    assert await owned_by(profile, survivor) == 1 and await owned_by(profile, merged) == 1
    assert "customer" in await attributes(profile, merged)
