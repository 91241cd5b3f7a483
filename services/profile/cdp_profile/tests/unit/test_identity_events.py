from __future__ import annotations

import uuid

import pytest

from cdp_errors import NotFound
from cdp_profile.domain.events import ProfileDeleted, ProfileUpdated

from .conftest import Harness, fragment


async def seed(
    harness: Harness, customer: str, source: str, attributes: dict[str, object], hours_ago: float
) -> None:
    await harness.app.ingestor.ingest_one(
        fragment(source, attributes, customer_id=customer, hours_ago=hours_ago)
    )


@pytest.fixture
async def two_customers(harness: Harness) -> tuple[str, str]:
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    await seed(harness, survivor, "crm", {"user": {"firstName": "Ada", "tags": ["vip"]}}, 5)
    await seed(
        harness,
        merged,
        "ecommerce",
        {"user": {"tags": ["buyer"]}, "customer": {"totalSpent": 80}},
        2,
    )
    harness.store.events.clear()
    return survivor, merged


async def test_a_merge_moves_the_losers_fragments_and_rebuilds_the_survivor(
    harness: Harness, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    await harness.app.identity_events.customers_merged("m-1", survivor=survivor, merged=merged)
    profile = await harness.app.queries.unified_profile(survivor)
    assert profile.attributes == {
        "user": {"firstName": "Ada", "tags": ["vip", "buyer"]},
        "customer": {"totalSpent": 80},
    }
    assert {f.customer_id for f in harness.store.fragments.values()} == {survivor}
    updated, deleted = harness.store.events
    assert isinstance(updated, ProfileUpdated) and updated.customer_id == survivor
    assert {c.path for c in updated.changes} == {"user.tags", "customer.totalSpent"}
    assert deleted == ProfileDeleted(merged, survivor, deleted.occurred_at)


async def test_an_unmerge_gives_each_customer_back_its_own_fragments(
    harness: Harness, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    before_survivor = (await harness.app.queries.unified_profile(survivor)).attributes
    before_merged = (await harness.app.queries.unified_profile(merged)).attributes
    await harness.app.identity_events.customers_merged("m-1", survivor=survivor, merged=merged)
    await harness.app.identity_events.customers_unmerged("u-1", survivor=survivor, restored=merged)
    assert (await harness.app.queries.unified_profile(survivor)).attributes == before_survivor
    restored = await harness.app.queries.unified_profile(merged)
    assert restored.customer_id == merged and restored.attributes == before_merged
    assert restored.version > 1


async def test_an_unmerge_follows_fragments_through_a_chain_of_merges(harness: Harness) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    await seed(harness, a, "crm", {"a": 1}, 3)
    await seed(harness, b, "crm", {"b": 1}, 2)
    await seed(harness, c, "crm", {"c": 1}, 1)
    await harness.app.identity_events.customers_merged("m-1", survivor=b, merged=a)
    await harness.app.identity_events.customers_merged("m-2", survivor=c, merged=b)
    assert (await harness.app.queries.unified_profile(a)).attributes == {"a": 1, "b": 1, "c": 1}
    await harness.app.identity_events.customers_unmerged("u-1", survivor=b, restored=a)
    assert (await harness.app.queries.unified_profile(a)).attributes == {"a": 1}
    assert (await harness.app.queries.unified_profile(c)).attributes == {"b": 1, "c": 1}


async def test_forgetting_deletes_everything_about_the_customer(
    harness: Harness, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    await harness.app.identity_events.customers_merged("m-1", survivor=survivor, merged=merged)
    harness.store.events.clear()
    await harness.app.identity_events.customer_forgotten(
        "f-1", customer_id=survivor, merged_customer_ids=[merged]
    )
    assert harness.store.fragments == {} and harness.store.fields == {}
    for customer in (survivor, merged):
        with pytest.raises(NotFound):
            await harness.app.queries.unified_profile(customer)
    assert harness.store.events == [
        ProfileDeleted(survivor, "", harness.store.events[0].occurred_at)
    ]


async def test_forgetting_a_merged_customer_removes_its_fragments_from_the_survivor(
    harness: Harness, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    await harness.app.identity_events.customers_merged("m-1", survivor=survivor, merged=merged)
    await harness.app.identity_events.customer_forgotten(
        "f-1", customer_id=merged, merged_customer_ids=[]
    )
    profile = await harness.app.queries.unified_profile(survivor)
    assert profile.attributes == {"user": {"firstName": "Ada", "tags": ["vip"]}}


async def test_a_redelivered_event_changes_nothing_the_second_time(
    harness: Harness, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    events = harness.app.identity_events
    await events.customers_merged("m-1", survivor=survivor, merged=merged)
    await events.customers_unmerged("u-1", survivor=survivor, restored=merged)
    announced = len(harness.store.events)
    await events.customers_merged("m-1", survivor=survivor, merged=merged)
    assert len(harness.store.events) == announced
    assert (await harness.app.queries.unified_profile(merged)).customer_id == merged


async def test_an_unmerge_handled_before_its_merge_leaves_the_customers_apart(
    harness: Harness, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    events = harness.app.identity_events
    await events.customers_unmerged("u-1", survivor=survivor, restored=merged, merge_id="mg-7")
    await events.customers_merged("m-1", survivor=survivor, merged=merged, merge_id="mg-7")
    assert (await harness.app.queries.unified_profile(merged)).customer_id == merged
    assert {f.customer_id for f in harness.store.fragments.values()} == {survivor, merged}


async def test_a_new_merge_of_the_same_customers_applies_after_an_old_one_was_undone(
    harness: Harness, two_customers: tuple[str, str]
) -> None:
    survivor, merged = two_customers
    events = harness.app.identity_events
    await events.customers_merged("m-1", survivor=survivor, merged=merged, merge_id="mg-1")
    await events.customers_unmerged("u-1", survivor=survivor, restored=merged, merge_id="mg-1")
    await events.customers_merged("m-2", survivor=survivor, merged=merged, merge_id="mg-2")
    assert (await harness.app.queries.unified_profile(merged)).customer_id == survivor
