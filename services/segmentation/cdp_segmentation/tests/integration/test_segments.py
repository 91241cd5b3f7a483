"""Definitions, validation, evaluation and membership, against real PostgreSQL and NATS."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest

from cdp.segmentation.v1 import segmentation_pb2 as pb
from cdp_bus import CloudEvent
from cdp_bus.subjects import PROFILE_UPDATED, dead_letter_subject
from cdp_grpc import field_violations_of
from cdp_segmentation.entrypoints.profile_consumer import CONSUMER
from cdp_segmentation.service_layer.profiles import ProfileChanged
from cdp_testing import wait_until

from .conftest import RunningSegmentation, customer, example, segment_of


def condition(field: str, operator: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"field": field, "operator": operator, **extra}
    if value is not None:
        body["value"] = value
    return {"condition": body}


def definition(*conditions: dict[str, Any], kind: str = "REALTIME", name: str = "s",
               logic: str = "AND") -> pb.Segment:
    return segment_of({
        "name": name,
        "criteria": {"operator": f"LOGICAL_OPERATOR_{logic}", "conditions": list(conditions)},
        "syncPlatforms": ["mailchimp"],
        "schedule": {"kind": f"SCHEDULE_KIND_{kind}"},
    })


def email_of(customer_id: str) -> str:
    return f"c-{customer_id[:12]}@example.com"


async def test_a_bad_definition_is_refused_naming_the_path_of_every_bad_part(
    segmentation: RunningSegmentation,
) -> None:
    bad = definition(
        condition("customer.lifetime_value", "greaterThan", 5),
        condition("customer.lifetime_value", "biggerThan", 5),
        condition("account.companyName", "greaterThan", 5),
        condition("customer.shoe_size", "equals", 5),
        {"group": {"operator": "LOGICAL_OPERATOR_NOT", "conditions": [
            condition("email.last_open_date", "withinLast", 30, unit="weeks"),
        ]}},
        condition("customer.lifetime_value", "between", [10]),
        condition("email.last_open_date", "after", "yesterday"),
        kind="CRON",
    )
    bad.schedule.cron = "61 * * * *"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await segmentation.create(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = dict(field_violations_of(caught.value))
    assert set(violations) == {
        "segment.criteria.conditions[1].operator",
        "segment.criteria.conditions[2].operator",
        "segment.criteria.conditions[3].field",
        "segment.criteria.conditions[4].conditions[0].unit",
        "segment.criteria.conditions[5].value",
        "segment.criteria.conditions[6].value",
        "segment.schedule.cron",
    }
    assert "unknown operator 'biggerThan'" in violations["segment.criteria.conditions[1].operator"]
    assert "greaterThan does not apply to account.companyName, a string field" in violations[
        "segment.criteria.conditions[2].operator"
    ]
    unknown = violations["segment.criteria.conditions[3].field"]
    assert "unknown field 'customer.shoe_size'" in unknown
    listed = await segmentation.stub.ListSegments(pb.ListSegmentsRequest())
    assert list(listed.segments) == []


async def test_field_names_and_values_never_reach_sql_as_text(
    segmentation: RunningSegmentation,
) -> None:
    tricky = "Robert'); DROP TABLE segmentation.profiles; --"
    ids = [customer() for _ in range(3)]
    for index, company in enumerate([tricky, "Acme", "x' OR '1'='1"]):
        await segmentation.publish(ids[index], {"account": {"companyName": company}})
    for id_ in ids:
        await segmentation.applied(id_)

    for field in ('customer.lifetime_value" OR 1=1 --', "x;DROP TABLE segmentation.profiles",
                  "account.companyName') IS NOT NULL OR ('"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await segmentation.stub.PreviewSegment(pb.PreviewSegmentRequest(
                criteria=definition(condition(field, "exists")).criteria
            ))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [f for f, _ in field_violations_of(caught.value)] == [
            "criteria.conditions[0].field"
        ]

    async def count(operator: str, value: Any) -> tuple[int, list[str]]:
        reply = await segmentation.stub.PreviewSegment(pb.PreviewSegmentRequest(
            criteria=definition(condition("account.companyName", operator, value)).criteria
        ))
        return reply.count, list(reply.sample_customer_ids)

    assert await count("equals", tricky) == (1, [ids[0]])
    assert await count("equals", "' OR ''='") == (0, [])
    assert await count("in", ["x' OR '1'='1", "'; SELECT 1; --"]) == (1, [ids[2]])
    assert (await count("contains", "%"))[0] == 0
    assert (await count("contains", "'"))[0] == 2
    stored = await segmentation.database.fetchval("SELECT count(*) FROM segmentation.profiles")
    assert stored == 3


async def test_count_preview_and_list_members_agree_and_list_members_streams_in_pages(
    segmentation: RunningSegmentation,
) -> None:
    values = {customer(): float(i * 10) for i in range(250)}
    for id_, value in values.items():
        await segmentation.publish(id_, {"customer": {"lifetime_value": value}})
    await segmentation.handled(250)
    expected = {id_ for id_, value in values.items() if value > 500}

    created = await segmentation.create(
        definition(condition("customer.lifetime_value", "greaterThan", 500), kind="DAILY")
    )
    assert created.member_count == len(expected) == 199

    pages = [page async for page in segmentation.stub.ListMembers(
        pb.ListMembersRequest(segment_id=created.id))]
    assert [len(p.members) for p in pages] == [100, 99]
    assert {m.customer_id for p in pages for m in p.members} == expected
    limited = [m async for p in segmentation.stub.ListMembers(
        pb.ListMembersRequest(segment_id=created.id, limit=150)) for m in p.members]
    assert len(limited) == 150 and {m.customer_id for m in limited} <= expected

    counted = await segmentation.stub.CountMembers(pb.CountMembersRequest(segment_id=created.id))
    assert counted.count == 199
    preview = await segmentation.stub.PreviewSegment(pb.PreviewSegmentRequest(
        criteria=definition(
            condition("customer.lifetime_value", "between", [100, 190]),
            {"group": {"operator": "LOGICAL_OPERATOR_NOT", "conditions": [
                condition("customer.lifetime_value", "in", [150, 160]),
            ]}},
        ).criteria,
        sample_size=5,
    ))
    between = {id_ for id_, value in values.items() if 100 <= value <= 190
               and value not in (150, 160)}
    assert preview.count == len(between) == 8
    assert len(preview.sample_customer_ids) == 5 and set(preview.sample_customer_ids) <= between


async def test_get_update_and_delete_keep_membership_matching_the_stored_criteria(
    segmentation: RunningSegmentation,
) -> None:
    low, high = customer(), customer()
    await segmentation.publish(low, {"customer": {"lifetime_value": 100}})
    await segmentation.publish(high, {"customer": {"lifetime_value": 900}})
    await segmentation.handled(2)
    created = await segmentation.create(
        definition(condition("customer.lifetime_value", "greaterThan", 500), kind="HOURLY")
    )
    assert await segmentation.members(created.id) == {high}

    changed = pb.Segment()
    changed.CopyFrom(created)
    changed.criteria.conditions[0].condition.value.number_value = 50
    updated = await segmentation.stub.UpdateSegment(pb.UpdateSegmentRequest(segment=changed))
    assert updated.segment.member_count == 2
    assert await segmentation.members(created.id) == {low, high}
    got = await segmentation.stub.GetSegment(pb.GetSegmentRequest(segment_id=created.id))
    assert got.segment.criteria.conditions[0].condition.value.number_value == 50
    assert [s.platform for s in got.segment.sync_status] == ["mailchimp"]
    assert got.segment.sync_status[0].pending_additions == 2
    assert got.segment.sync_status[0].HasField("next_sync_at")

    await segmentation.stub.DeleteSegment(pb.DeleteSegmentRequest(segment_id=created.id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await segmentation.stub.GetSegment(pb.GetSegmentRequest(segment_id=created.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await segmentation.stub.GetSegment(pb.GetSegmentRequest(segment_id="nope"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_profile_change_reevaluates_that_customer_and_realtime_segments_announce_it(
    segmentation: RunningSegmentation,
) -> None:
    created = await segmentation.create(
        definition(condition("customer.lifetime_value", "greaterThan", 500, source="crm"))
    )
    ada, bob = customer(), customer()
    first = await segmentation.publish(ada, {"customer": {"lifetime_value": 600}})
    entered = [(ada, "MEMBERSHIP_CHANGE_ENTERED")]
    await wait_until(lambda: segmentation.announced.of(created.id) == entered,
                     timeout=20, message="ada entered")
    await segmentation.publish(ada, {"customer": {"lifetime_value": 100}})
    # The first event again (a re-sent duplicate), and an older version: both change nothing.
    await segmentation.publish(ada, {"customer": {"lifetime_value": 600}}, version=1,
                               message_id=first)
    await segmentation.publish(ada, {"customer": {"lifetime_value": 700}}, version=1)
    await segmentation.publish(bob, {"customer": {"lifetime_value": 501}})
    await wait_until(lambda: (bob, "MEMBERSHIP_CHANGE_ENTERED") in
                     segmentation.announced.of(created.id), timeout=20, message="bob entered")
    assert segmentation.announced.of(created.id) == [
        (ada, "MEMBERSHIP_CHANGE_ENTERED"),
        (ada, "MEMBERSHIP_CHANGE_EXITED"),
        (bob, "MEMBERSHIP_CHANGE_ENTERED"),
    ]
    assert await segmentation.members(created.id) == {bob}

    await segmentation.publish_deleted(bob)
    await wait_until(lambda: (bob, "MEMBERSHIP_CHANGE_EXITED") in
                     segmentation.announced.of(created.id), timeout=20, message="bob exited")
    assert await segmentation.members(created.id) == set()


async def test_an_unreadable_profile_event_is_dead_lettered_and_the_rest_applied(
    segmentation: RunningSegmentation,
) -> None:
    js = segmentation.bus.jetstream()
    unreadable = CloudEvent(id=customer(), type=PROFILE_UPDATED, source="/cdp/profile",
                            data=b"\xff\xff\xff")
    await js.publish(PROFILE_UPDATED, unreadable.data, headers=unreadable.headers())
    ada = customer()
    await segmentation.publish(ada, {"customer": {"lifetime_value": 600}})
    await segmentation.applied(ada)
    dead = await js.pull_subscribe(dead_letter_subject(CONSUMER), durable="dlq-reader",
                                   stream="CDP_DEADLETTER")
    (message,) = await dead.fetch(1, timeout=20)
    headers = message.headers or {}
    assert headers["ce-id"] == unreadable.id
    assert headers["cdp-original-subject"] == PROFILE_UPDATED
    assert headers["cdp-dead-letter-reason"].startswith(
        f"{PROFILE_UPDATED} body is not a cdp.profile.v1.ProfileUpdated:")


async def test_one_batch_seeing_an_undeclared_field_from_two_platforms_learns_both(
    segmentation: RunningSegmentation,
) -> None:
    # A CRM and a shop fragment ingested together make two changes that reach the consumer
    # in one batch; the field they share was once recorded twice in one statement.
    ada, bob = customer(), customer()
    now = segmentation.clock.now
    applied = await segmentation.app.profiles.apply([
        ProfileChanged(str(uuid.uuid4()), ada, 1, {"loyalty": {"tier": "gold"}},
                       {"loyalty.tier": "crm"}, now),
        ProfileChanged(str(uuid.uuid4()), bob, 1, {"loyalty": {"tier": "silver"}},
                       {"loyalty.tier": "shopify"}, now),
    ])
    assert applied.profiles_changed == 2
    learned = await segmentation.database.fetch(
        "SELECT type, sources FROM segmentation.learned_fields WHERE path = 'loyalty.tier'")
    assert [(row["type"], list(row["sources"])) for row in learned] == [
        ("string", ["crm", "shopify"])]
    preview = await segmentation.stub.PreviewSegment(pb.PreviewSegmentRequest(
        criteria=definition(condition("loyalty.tier", "equals", "gold")).criteria))
    assert list(preview.sample_customer_ids) == [ada]


async def test_people_leave_a_within_the_last_30_days_segment_as_time_passes(
    segmentation: RunningSegmentation,
) -> None:
    now = segmentation.clock.now
    fading, fresh = customer(), customer()
    for id_, days in ((fading, 29), (fresh, 10)):
        await segmentation.publish(id_, {
            "email": {"last_open_date": (now - timedelta(days=days)).isoformat()},
            "user": {"email": email_of(id_)},
        })
    await segmentation.handled(2)
    created = await segmentation.create(
        definition(condition("email.last_open_date", "withinLast", 30, unit="days"))
    )
    assert await segmentation.members(created.id) == {fading, fresh}

    segmentation.clock.advance(hours=23)
    assert (await segmentation.app.time.run()).exited == 0
    segmentation.clock.advance(hours=2)
    run = await segmentation.app.time.run()
    assert (run.entered, run.exited) == (0, 1)
    assert await segmentation.members(created.id) == {fresh}
    await wait_until(lambda: (fading, "MEMBERSHIP_CHANGE_EXITED") in
                     segmentation.announced.of(created.id), timeout=20, message="exit announced")
    counted = await segmentation.stub.CountMembers(pb.CountMembersRequest(segment_id=created.id))
    assert counted.count == 1


async def test_both_example_segments_evaluate_stay_current_and_sync(
    segmentation: RunningSegmentation,
) -> None:
    now = segmentation.clock.now

    def days_ago(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    ada, bea, cy = customer(), customer(), customer()
    people: dict[str, dict[str, Any]] = {
        ada: {"customer": {"lifetime_value": 900}, "email": {"last_open_date": days_ago(3)},
              "mailchimp": {"status": "subscribed"},
              "ecommerce": {"cart": {"value": 80}, "cart_abandoned_at": days_ago(1)}},
        bea: {"customer": {"lifetime_value": 200}, "email": {"last_open_date": days_ago(1)},
              "mailchimp": {"status": "subscribed"}, "ecommerce": {"cart": {"value": 0}}},
        cy: {"customer": {"lifetime_value": 700}, "email": {"last_open_date": days_ago(40)},
             "mailchimp": {"status": "subscribed"},
             "ecommerce": {"cart": {"value": 50}, "cart_abandoned_at": days_ago(2)}},
    }
    for id_, attributes in people.items():
        await segmentation.publish(id_, {**attributes, "user": {"email": email_of(id_)}})
    await segmentation.handled(3)
    engaged = await segmentation.create(example("high_value_email_engaged"))
    carts = await segmentation.create(example("subscribers_with_abandoned_carts"))
    assert await segmentation.members(engaged.id) == {ada}
    assert await segmentation.members(carts.id) == {ada, cy}

    people[bea]["customer"]["lifetime_value"] = 1000
    await segmentation.publish(bea, {**people[bea], "user": {"email": email_of(bea)}})
    await segmentation.applied(bea)
    assert await segmentation.members(engaged.id) == {ada, bea}

    segmentation.clock.advance(days=6, hours=12)
    await segmentation.app.time.run()
    assert await segmentation.members(carts.id) == set()
    assert await segmentation.members(engaged.id) == {ada, bea}

    results = [await segmentation.stub.SyncSegment(pb.SyncSegmentRequest(segment_id=s.id))
               for s in (engaged, carts)]
    assert all(r.success for reply in results for r in reply.results)
    assert segmentation.connector.segments[engaged.id] == {email_of(ada), email_of(bea)}
    # ada and cy entered and left the cart segment before any sync: nothing to send.
    assert segmentation.connector.segments.get(carts.id, set()) == set()
