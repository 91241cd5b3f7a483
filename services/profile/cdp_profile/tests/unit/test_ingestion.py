from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from cdp_errors import FailedPrecondition, InvalidArgument, Unavailable
from cdp_profile.config.loader import ProfileConfig, load_profile_config
from cdp_profile.domain.events import ProfileUpdated
from cdp_profile.domain.model import IngestResult
from cdp_settings.platforms import KNOWN_PLATFORMS

from .conftest import Harness, fragment


async def test_a_customer_fed_by_two_platforms_gets_one_profile_with_provenance(
    harness: Harness,
) -> None:
    ingestor = harness.app.ingestor
    crm = await ingestor.ingest_one(
        fragment(
            "crm",
            {
                "user": {"firstName": "Ada", "email": "ada@example.com", "tags": ["vip"]},
                "account": {"companyName": "Analytical Engines"},
            },
            email="ada@example.com",
            hours_ago=5,
        )
    )
    shop = await ingestor.ingest_one(
        fragment(
            "ecommerce",
            {
                "user": {"firstName": "A.", "tags": ["buyer", "vip"]},
                "customer": {"totalSpent": 1200.5, "orderCount": 3.0},
            },
            email="ADA@example.com",
            hours_ago=1,
        )
    )
    assert shop.customer_id == crm.customer_id
    profile = await harness.app.queries.unified_profile(crm.customer_id)
    assert profile.attributes == {
        "user": {"firstName": "Ada", "email": "ada@example.com", "tags": ["vip", "buyer"]},
        "account": {"companyName": "Analytical Engines"},
        "customer": {"totalSpent": 1200.5, "orderCount": 3},
    }
    why = {s.path: (s.source, s.strategy_name, s.contributing_sources) for s in profile.fields}
    assert why == {
        "user.firstName": ("crm", "source_priority", ()),
        "user.email": ("crm", "source_priority", ()),
        "user.tags": ("ecommerce", "merge_arrays", ("crm", "ecommerce")),
        "account.companyName": ("crm", "source_priority", ()),
        "customer.totalSpent": ("ecommerce", "highest_value", ()),
        "customer.orderCount": ("ecommerce", "highest_value", ()),
    }
    first_name = next(s for s in profile.fields if s.path == "user.firstName")
    assert first_name.reason.startswith("crm ranks 1 of 5")
    assert profile.version == 2


async def test_every_change_is_announced_with_old_and_new_values(harness: Harness) -> None:
    customer = str(uuid.uuid4())
    ingestor = harness.app.ingestor
    await ingestor.ingest_one(
        fragment("support", {"user": {"city": "London"}}, customer_id=customer, hours_ago=3)
    )
    unchanged = await ingestor.ingest_one(
        fragment("web", {"user": {"city": "Paris"}}, customer_id=customer, hours_ago=9)
    )
    moved = await ingestor.ingest_one(
        fragment("web", {"user": {"city": "Paris"}}, customer_id=customer, hours_ago=1)
    )
    assert unchanged.changed_fields == () and unchanged.profile_version == 1
    assert moved.changed_fields == ("user.city",) and moved.profile_version == 2
    first, second = harness.store.events
    assert isinstance(first, ProfileUpdated) and isinstance(second, ProfileUpdated)
    (change,) = second.changes
    assert (change.path, change.old_value, change.new_value, change.source) == (
        "user.city",
        "London",
        "Paris",
        "web",
    )
    assert second.version == 2 and second.attributes == {"user": {"city": "Paris"}}
    assert len(harness.store.fragments) == 3


async def test_a_batch_resolves_all_its_identifiers_in_one_identity_call(harness: Harness) -> None:
    fragments = [
        fragment("crm", {"user": {"n": i}}, email=f"person{i % 3}@example.com") for i in range(9)
    ]
    outcomes = await harness.app.ingestor.ingest_many(fragments)
    assert harness.identity.calls == [9]
    assert len({o.customer_id for o in outcomes if isinstance(o, IngestResult)}) == 3


async def test_bad_items_of_a_batch_fail_alone_and_name_their_field(harness: Harness) -> None:
    customer = str(uuid.uuid4())
    outcomes = await harness.app.ingestor.ingest_many(
        [
            fragment("crm", {"user": {"firstName": "Ada"}}, customer_id=customer),
            fragment("nowhere", {"user": {"firstName": "Ada"}}, customer_id=customer),
            fragment("crm", {"user": {"firstName": "Ada"}}, email="not-an-email"),
            fragment("crm", {"user": {"firstName": "Ada"}}, customer_id="42"),
            fragment(
                "crm", {"user": {"firstName": "Ada"}}, customer_id=customer, observed_at=(0, -5)
            ),
            fragment("shopify", {"user": {"firstName": "Augusta"}}, customer_id=customer),
        ]
    )
    good, source, email, bad_id, bad_time, also_good = outcomes
    assert isinstance(good, IngestResult) and isinstance(also_good, IngestResult)
    fields = {
        index: [v.field for v in outcome.violations]
        for index, outcome in enumerate(outcomes)
        if isinstance(outcome, InvalidArgument)
    }
    assert fields == {
        1: ["fragments[1].source"],
        2: ["fragments[2].identifiers.email"],
        3: ["fragments[3].customer_id"],
        4: ["fragments[4].observed_at"],
    }
    assert len(harness.store.fragments) == 2


async def test_bad_input_stores_nothing_and_names_the_field(harness: Harness) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await harness.app.ingestor.ingest_one(
            fragment(
                "crm",
                {"user": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}},
                email="ada@example.com",
            )
        )
    assert [v.field for v in caught.value.violations] == ["fragment.attributes.user.a.b.c.d.e.f.g"]
    assert harness.store.fragments == {} and harness.store.profiles == {}
    assert harness.identity.calls == []


async def test_identity_being_down_fails_only_the_fragments_that_need_it(harness: Harness) -> None:
    harness.identity.down = True
    customer = str(uuid.uuid4())
    known, unknown = await harness.app.ingestor.ingest_many(
        [
            fragment("crm", {"user": {"x": 1}}, customer_id=customer),
            fragment("crm", {"user": {"x": 1}}, email="ada@example.com"),
        ]
    )
    assert isinstance(known, IngestResult)
    assert isinstance(unknown, Unavailable)
    with pytest.raises(Unavailable):
        await harness.app.ingestor.ingest_one(fragment("crm", {"user": {"x": 1}}, email="a@b.co"))


async def test_one_more_fragment_never_reads_the_history(harness: Harness) -> None:
    customer = str(uuid.uuid4())
    for hour in range(40):
        await harness.app.ingestor.ingest_one(
            fragment(
                "crm",
                {"user": {"visits": hour, "tags": [f"t{hour % 4}"]}},
                customer_id=customer,
                hours_ago=50 - hour,
            )
        )
    assert harness.store.history_reads == 0
    profile = await harness.app.queries.unified_profile(customer)
    assert profile.attributes == {"user": {"visits": 39, "tags": ["t3"]}}


async def test_a_fragment_whose_shape_clashes_with_the_profile_is_refused(harness: Harness) -> None:
    customer = str(uuid.uuid4())
    await harness.app.ingestor.ingest_one(
        fragment("crm", {"user": {"name": "Ada"}}, customer_id=customer)
    )
    with pytest.raises(InvalidArgument) as inside_a_value:
        await harness.app.ingestor.ingest_one(
            fragment("web", {"user": {"name": {"first": "Ada"}}}, customer_id=customer)
        )
    with pytest.raises(InvalidArgument) as over_an_object:
        await harness.app.ingestor.ingest_one(
            fragment("web", {"user": "Ada"}, customer_id=customer)
        )
    assert [v.field for v in inside_a_value.value.violations] == [
        "fragment.attributes.user.name.first"
    ]
    assert "user.name holds a value" in inside_a_value.value.violations[0].description
    assert [v.field for v in over_an_object.value.violations] == ["fragment.attributes.user"]
    assert len(harness.store.fragments) == 1


async def test_fragments_for_a_merged_customer_land_on_the_survivor(harness: Harness) -> None:
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    await harness.app.ingestor.ingest_one(fragment("crm", {"user": {"a": 1}}, customer_id=survivor))
    await harness.app.ingestor.ingest_one(fragment("crm", {"user": {"b": 2}}, customer_id=merged))
    await harness.app.identity_events.customers_merged("m-1", survivor=survivor, merged=merged)
    late = await harness.app.ingestor.ingest_one(
        fragment("web", {"user": {"c": 3}}, customer_id=merged)
    )
    assert late.customer_id == survivor
    stored = next(f for f in harness.store.fragments.values() if f.id == late.fragment_id)
    assert (stored.customer_id, stored.ingested_for) == (survivor, merged)
    profile = await harness.app.queries.unified_profile(merged)
    assert profile.customer_id == survivor
    assert profile.attributes == {"user": {"a": 1, "b": 2, "c": 3}}


async def test_a_forgotten_customer_cannot_be_written_again(harness: Harness) -> None:
    customer = str(uuid.uuid4())
    await harness.app.ingestor.ingest_one(fragment("crm", {"user": {"a": 1}}, customer_id=customer))
    await harness.app.identity_events.customer_forgotten(
        "f-1", customer_id=customer, merged_customer_ids=[]
    )
    with pytest.raises(FailedPrecondition, match="was forgotten"):
        await harness.app.ingestor.ingest_one(
            fragment("crm", {"user": {"a": 2}}, customer_id=customer)
        )


async def test_a_changed_strategy_rebuilds_the_profile_once_from_history(
    harness: Harness, tmp_path: Path
) -> None:
    customer = str(uuid.uuid4())
    for hours_ago, value in ((3, 10), (2, 50), (1, 20)):
        await harness.app.ingestor.ingest_one(
            fragment("crm", {"stats": {"score": value}}, customer_id=customer, hours_ago=hours_ago)
        )
    assert (await harness.app.queries.unified_profile(customer)).attributes == {
        "stats": {"score": 20}
    }
    strategies = tmp_path / "strategies.yaml"
    strategies.write_text("fields:\n  - {path: stats.score, strategy: highest_value}\n")
    config: ProfileConfig = load_profile_config(
        strategies_file=strategies, mappings_file=None, platforms=KNOWN_PLATFORMS
    )
    changed = harness.rebuilt(config)
    result = await changed.app.ingestor.ingest_one(
        fragment("web", {"stats": {"score": 30}}, customer_id=customer)
    )
    profile = await changed.app.queries.unified_profile(customer)
    assert profile.attributes == {"stats": {"score": 50}}
    assert result.changed_fields == ()
    assert changed.store.history_reads == 1
    await changed.app.ingestor.ingest_one(
        fragment("web", {"stats": {"score": 60}}, customer_id=customer)
    )
    assert changed.store.history_reads == 1


async def test_a_batch_over_the_limit_is_refused_whole(harness: Harness) -> None:
    one = fragment("crm", {"a": 1}, customer_id=str(uuid.uuid4()))
    with pytest.raises(InvalidArgument, match="has 1,001 entries; the limit is 1,000"):
        await harness.app.ingestor.ingest_many([replace(one)] * 1001)
