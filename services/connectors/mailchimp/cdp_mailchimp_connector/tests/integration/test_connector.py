from __future__ import annotations

import hashlib
from typing import Any

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from cdp.common.v1 import common_pb2
from cdp.connector.v1 import connector_pb2
from cdp.events.v1 import events_pb2
from cdp_grpc import field_violations_of

from .conftest import LIST_ID, Peers, RunningConnector, RunningSandbox


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def profile(n: int, **payload: Any) -> connector_pb2.PlatformProfile:
    document = Struct()
    document.update(payload or {"merge_fields": {"FNAME": f"Ada{n}"}})
    return connector_pb2.PlatformProfile(
        customer_id=f"c-{n}", email=f"person{n}@example.com", payload=document
    )


def push(*profiles: connector_pb2.PlatformProfile) -> connector_pb2.PushProfilesRequest:
    return connector_pb2.PushProfilesRequest(profiles=list(profiles))


async def test_profiles_with_merge_fields_and_tags_become_members(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await connector.stub.EnsureFields(connector_pb2.EnsureFieldsRequest(fields=[
        connector_pb2.FieldDefinition(tag="LTV", name="Lifetime value",
                                      type=connector_pb2.FIELD_TYPE_NUMBER),
    ]))
    response = await connector.stub.PushProfiles(push(
        profile(1, merge_fields={"FNAME": "Ada", "LTV": 512}, tags=[{"name": "vip",
                                                                      "status": "active"}]),
        profile(2),
    ))
    assert [(r.key, r.success) for r in response.results] == [("c-1", True), ("c-2", True)]
    member = sandbox.audience.members[md5("person1@example.com")]
    assert member["status"] == "subscribed"
    assert member["merge_fields"]["FNAME"] == "Ada" and member["merge_fields"]["LTV"] == 512
    assert sandbox.audience.segment_named("vip").members == {md5("person1@example.com")}


async def test_an_inactive_tag_removes_the_tag_from_the_member(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await connector.stub.PushProfiles(push(profile(1, tags=["vip", "beta"])))
    await connector.stub.PushProfiles(push(profile(1, tags=[{"name": "beta",
                                                             "status": "inactive"}])))
    member_hash = md5("person1@example.com")
    assert member_hash in sandbox.audience.segment_named("vip").members
    assert member_hash not in sandbox.audience.segment_named("beta").members


async def test_a_repeat_upsert_never_resubscribes_an_unsubscribed_member(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await connector.stub.PushProfiles(push(profile(1)))
    await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                          {"type": "unsubscribe", "email": "person1@example.com"})
    response = await connector.stub.PushProfiles(push(profile(1, merge_fields={"FNAME": "New"})))
    assert response.results[0].success
    member = sandbox.audience.members[md5("person1@example.com")]
    assert member["status"] == "unsubscribed"
    assert member["merge_fields"]["FNAME"] == "New"


async def test_subscribing_a_self_unsubscribed_member_is_a_permanent_recorded_failure(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await connector.stub.PushProfiles(push(profile(1), profile(2)))
    await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                          {"type": "unsubscribe", "email": "person1@example.com"})
    response = await connector.stub.PushProfiles(push(profile(1, status="subscribed"),
                                                       profile(2, status="subscribed")))
    refused, fine = response.results
    assert not refused.success and refused.permanent and fine.success
    assert "person1@example.com" not in refused.error
    failed = await connector.stub.ListFailedOperations(
        connector_pb2.ListFailedOperationsRequest(include_permanent=True)
    )
    assert [(o.operation, o.subject_id, o.permanent) for o in failed.operations] == [
        ("push_profile", "c-1", True)
    ]


async def test_bad_profiles_are_rejected_naming_each_field_and_nothing_is_written(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    bad_email = connector_pb2.PlatformProfile(customer_id="c-9", email="not-an-email")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await connector.stub.PushProfiles(push(
            profile(1),
            bad_email,
            profile(3, merge_fields={"NOPE": "x"}),
            profile(4, status="maybe"),
        ))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations_of(caught.value)] == [
        "profiles[1].email",
        "profiles[2].payload.merge_fields.NOPE",
        "profiles[3].payload.status",
    ]
    assert "not-an-email" not in (caught.value.details() or "")
    assert sandbox.audience.members == {}


async def test_a_large_push_is_checked_whole_before_anything_is_written(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    # Pushes above one Mailchimp batch are read and checked off the event loop: the same
    # rules, the same field paths, and still nothing written when one profile is bad.
    profiles = [profile(n) for n in range(1_500)]
    profiles[1_234] = profile(1_234, merge_fields={"NOPE": "x"})
    profiles[1_499] = profile(7)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await connector.stub.PushProfiles(push(*profiles))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations_of(caught.value)] == [
        "profiles[1234].payload.merge_fields.NOPE",
        "profiles[1499].email",
    ]
    assert sandbox.audience.members == {}


async def test_events_become_member_events_and_unknown_people_fail_permanently(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await connector.stub.PushProfiles(push(profile(1)))
    properties = Struct()
    properties.update({"order_id": "o-1", "total": 42.5, "items": [1, 2]})
    response = await connector.stub.DeliverEvents(connector_pb2.DeliverEventsRequest(events=[
        events_pb2.Event(id="e-1", type="order.completed", source="shop",
                         identifiers=common_pb2.Identifiers(email="person1@example.com"),
                         properties=properties),
        events_pb2.Event(id="e-2", type="order.completed",
                         identifiers=common_pb2.Identifiers(email="stranger@example.com")),
        events_pb2.Event(id="e-3", type="order.completed", customer_id="c-3"),
    ]))
    assert [(r.key, r.success, r.permanent) for r in response.results] == [
        ("e-1", True, False), ("e-2", False, True), ("e-3", False, True)
    ]
    (event,) = sandbox.audience.events[md5("person1@example.com")]
    assert event["name"] == "order_completed"
    assert event["properties"] == {"order_id": "o-1", "total": "42.5", "items": "[1,2]"}


async def test_segment_deltas_and_a_full_resync_mirror_the_static_segment(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await connector.stub.PushProfiles(push(*(profile(n) for n in range(1, 6))))
    members = [connector_pb2.SegmentMember(customer_id=f"c-{n}", email=f"person{n}@example.com")
               for n in range(1, 6)]
    first = await connector.stub.SyncSegmentMembership(connector_pb2.SyncSegmentMembershipRequest(
        segment_id="seg-1", segment_name="High value", members_to_add=members[:3],
    ))
    assert first.members_added == 3
    resync = await connector.stub.SyncSegmentMembership(connector_pb2.SyncSegmentMembershipRequest(
        segment_id="seg-1", segment_name="High value", members_to_add=members[2:],
        full_resync=True,
    ))
    segment = sandbox.audience.segments[int(first.platform_segment_id)]
    assert resync.platform_segment_id == first.platform_segment_id
    assert (resync.members_added, resync.members_removed) == (2, 2)
    assert segment.members == {md5(f"person{n}@example.com") for n in (3, 4, 5)}
    stranger = await connector.stub.SyncSegmentMembership(
        connector_pb2.SyncSegmentMembershipRequest(
            segment_id="seg-1", segment_name="High value",
            members_to_add=[connector_pb2.SegmentMember(customer_id="c-x",
                                                        email="nobody@example.com")],
        )
    )
    assert [(f.key, f.permanent) for f in stranger.failures] == [("c-x", True)]


async def test_fetch_shows_the_member_and_delete_forgets_it_for_good(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await connector.stub.PushProfiles(push(profile(1)))
    fetched = await connector.stub.FetchCustomer(
        connector_pb2.FetchCustomerRequest(customer_id="c-1", email="Person1@example.com")
    )
    assert fetched.found and fetched.record["status"] == "subscribed"
    deleted = await connector.stub.DeleteCustomer(connector_pb2.DeleteCustomerRequest(
        customer_id="c-1", email_md5_hashes=[md5("person1@example.com"), md5("other@x.com")],
    ))
    assert deleted.records_deleted == 1
    missing = await connector.stub.FetchCustomer(
        connector_pb2.FetchCustomerRequest(email="person1@example.com")
    )
    assert not missing.found
    again = await connector.stub.PushProfiles(push(profile(1)))
    assert not again.results[0].success and again.results[0].permanent


async def test_health_reports_ping_latency_and_a_closed_circuit(
    connector: RunningConnector,
) -> None:
    health = await connector.stub.GetConnectorHealth(connector_pb2.GetConnectorHealthRequest())
    assert health.status == connector_pb2.CONNECTION_STATUS_HEALTHY
    assert health.circuit_state == "closed" and health.latency_ms > 0
    assert health.platform == "mailchimp"


async def test_large_pushes_go_through_batch_operations_and_their_results_archive(
    database_url: str, sandbox: RunningSandbox, peers: Peers, telemetry: Any
) -> None:
    from .conftest import connector_settings, run_connector

    settings = connector_settings(database_url, sandbox, peers, batch_operations_threshold=100)
    async with run_connector(settings, telemetry) as running:
        await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                              {"type": "campaign"})  # an unrelated change on the side
        await running.stub.PushProfiles(push(profile(0)))
        await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                              {"type": "unsubscribe", "email": "person0@example.com"})
        response = await running.stub.PushProfiles(
            push(profile(0, status="subscribed"), *(profile(n) for n in range(1, 1200)))
        )
    assert len(response.results) == 1200
    assert not response.results[0].success and response.results[0].permanent
    assert all(r.success for r in response.results[1:])
    assert len(sandbox.audience.members) == 1200
    assert sandbox.state.stats.by_route.get("POST /batches", 0) == 1
    assert sandbox.state.batches.batches


async def test_nothing_leaks_the_api_key_or_an_email_into_spans(
    connector: RunningConnector, span_exporter: Any
) -> None:
    await connector.stub.PushProfiles(push(profile(1)))
    await connector.stub.GetConnectorHealth(connector_pb2.GetConnectorHealthRequest())
    spans = span_exporter.get_finished_spans()
    mailchimp = [s for s in spans if s.name.startswith("mailchimp ")]
    assert {s.name for s in mailchimp} >= {"mailchimp POST /lists/{id}", "mailchimp GET /ping"}
    text = str([(s.name, dict(s.attributes or {})) for s in spans])
    assert "person1@example.com" not in text and md5("person1@example.com") not in text
    from mailchimp_sandbox.settings import SANDBOX_API_KEY

    assert SANDBOX_API_KEY not in text


async def test_webhook_url_answers_the_validator(connector: RunningConnector,
                                                 sandbox: RunningSandbox) -> None:
    import asyncio
    import urllib.request

    def get() -> int:
        with urllib.request.urlopen(connector.webhook_url, timeout=5) as reply:
            return int(reply.status)

    assert await asyncio.to_thread(get) == 200
