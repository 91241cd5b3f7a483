from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from nats.aio.msg import Msg
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdp.connector.v1 import connector_pb2
from cdp.profile.v1 import profile_events_pb2, profile_pb2
from cdp_bus import NatsSettings, connect_nats
from cdp_bus.subjects import PROFILE_UPDATED
from cdp_embedded import EmbeddedNats
from cdp_grpc import field_violations_of
from cdp_grpc.structs import struct_to_dict

from .conftest import RunningProfile
from .helpers import fragment, ingest


async def get_profile(profile: RunningProfile, customer_id: str) -> profile_pb2.UnifiedProfile:
    response = await profile.stub.GetUnifiedProfile(
        profile_pb2.GetUnifiedProfileRequest(customer_id=customer_id)
    )
    return response.profile


async def test_a_customer_fed_by_two_platforms_has_one_profile_saying_where_and_why(
    profile: RunningProfile,
) -> None:
    crm = await profile.stub.IngestProfileFragment(
        ingest(
            fragment(
                "crm",
                {
                    "user": {"firstName": "Ada", "email": "ada@example.com", "tags": ["vip"]},
                    "account": {"companyName": "Analytical Engines"},
                    "preferences": {"email": {"weekly": True}},
                },
                email="ada@example.com",
                hours_ago=5,
            )
        )
    )
    shop = await profile.stub.IngestProfileFragment(
        ingest(
            fragment(
                "ecommerce",
                {
                    "user": {"firstName": "A.", "tags": ["buyer"]},
                    "customer": {"totalSpent": 1200.5, "orderCount": 3},
                    "preferences": {"email": {"daily": False}, "language": "en"},
                },
                email="Ada@Example.com",
                hours_ago=1,
            )
        )
    )
    assert shop.customer_id == crm.customer_id
    unified = await get_profile(profile, crm.customer_id)
    assert json_format.MessageToDict(unified.attributes) == {
        "user": {"firstName": "Ada", "email": "ada@example.com", "tags": ["vip", "buyer"]},
        "account": {"companyName": "Analytical Engines"},
        "preferences": {"email": {"weekly": True, "daily": False}, "language": "en"},
        "customer": {"totalSpent": 1200.5, "orderCount": 3.0},
    }
    provenance = unified.provenance
    assert set(provenance) == {
        "user.firstName",
        "user.email",
        "user.tags",
        "account.companyName",
        "preferences",
        "customer.totalSpent",
        "customer.orderCount",
    }
    for path, field in provenance.items():
        assert field.source and field.strategy and field.reason, path
        assert field.observed_at.seconds > 0, path
    assert (provenance["user.firstName"].source, provenance["user.firstName"].strategy) == (
        "crm",
        "source_priority",
    )
    assert "crm ranks 1" in provenance["user.firstName"].reason
    assert list(provenance["user.tags"].contributing_sources) == ["crm", "ecommerce"]
    assert list(provenance["preferences"].contributing_sources) == ["crm", "ecommerce"]
    assert provenance["customer.totalSpent"].strategy == "highest_value"
    assert unified.version == 2
    assert profile.peers.identity.batch_calls == [1, 1]


async def test_simultaneous_fragments_for_one_customer_all_count(
    profile: RunningProfile,
) -> None:
    customer = str(uuid.uuid4())
    replies = await asyncio.gather(
        *(
            profile.stub.IngestProfileFragment(
                ingest(fragment("crm", {"fields": {f"f{n}": n}}, customer_id=customer))
            )
            for n in range(20)
        )
    )
    unified = await get_profile(profile, customer)
    assert sorted(r.profile_version for r in replies) == list(range(1, 21))
    assert unified.version == 20
    assert json_format.MessageToDict(unified.attributes)["fields"] == {
        f"f{n}": float(n) for n in range(20)
    }


async def test_an_older_fragment_arriving_later_does_not_win(profile: RunningProfile) -> None:
    customer = str(uuid.uuid4())
    await profile.stub.IngestProfileFragment(
        ingest(fragment("support", {"user": {"city": "Paris"}}, customer_id=customer, hours_ago=1))
    )
    late = await profile.stub.IngestProfileFragment(
        ingest(fragment("web", {"user": {"city": "Lyon"}}, customer_id=customer, hours_ago=30))
    )
    unified = await get_profile(profile, customer)
    assert list(late.changed_fields) == []
    assert json_format.MessageToDict(unified.attributes) == {"user": {"city": "Paris"}}
    assert unified.provenance["user.city"].source == "support"
    assert await profile.count("fragments") == 2


def deep(levels: int) -> dict[str, object]:
    node: dict[str, object] = {"leaf": 1}
    for index in range(levels):
        node = {f"l{index}": node}
    return node


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda f: f.attributes.update({"blob": "x" * 70_000}), "fragment.attributes"),
        (lambda f: f.attributes.update(deep(9)), "fragment.attributes.l8.l7.l6.l5.l4.l3.l2.l1"),
        (lambda f: setattr(f.observed_at, "nanos", -1), "fragment.observed_at"),
        (lambda f: setattr(f.observed_at, "seconds", 253402300800), "fragment.observed_at"),
        (lambda f: f.ClearField("observed_at"), "fragment.observed_at"),
        (lambda f: setattr(f, "source", "fax"), "fragment.source"),
        (lambda f: setattr(f, "customer_id", "customer-42"), "fragment.customer_id"),
        (lambda f: f.identifiers.Clear(), "fragment.identifiers"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field_and_stores_nothing(
    profile: RunningProfile, change: object, field: str
) -> None:
    message = fragment("crm", {"user": {"firstName": "Ada"}}, email="ada@example.com")
    change(message)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await profile.stub.IngestProfileFragment(ingest(message))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations_of(caught.value)] == [field]
    assert "ada@example.com" not in (caught.value.details() or "")
    assert await profile.count("fragments") == 0
    assert await profile.count("profiles") == 0
    assert await profile.count("outbox") == 0


async def test_identity_refusing_an_identifier_is_invalid_argument_on_that_field(
    profile: RunningProfile,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await profile.stub.IngestProfileFragment(
            ingest(fragment("crm", {"user": {"firstName": "Ada"}}, email="not-an-email"))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations_of(caught.value)] == ["fragment.identifiers.email"]
    assert await profile.count("fragments") == 0


async def test_a_batch_answers_each_fragment_and_resolves_identities_in_one_call(
    profile: RunningProfile,
) -> None:
    customer = str(uuid.uuid4())
    response = await profile.stub.IngestProfileFragments(
        profile_pb2.IngestProfileFragmentsRequest(
            fragments=[
                fragment("crm", {"user": {"n": 1}}, email="one@example.com"),
                fragment("fax", {"user": {"n": 2}}, email="two@example.com"),
                fragment("crm", {"user": {"n": 3}}, email="broken"),
                fragment("shopify", {"user": {"n": 4}}, email="ONE@example.com"),
                fragment("crm", {"user": {"n": 5}}, customer_id=customer),
            ]
        )
    )
    first, bad_source, bad_email, same, by_id = response.results
    assert first.ingested.customer_id == same.ingested.customer_id
    assert by_id.ingested.customer_id == customer
    assert bad_source.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [v.field for v in bad_source.error.field_violations] == ["fragments[1].source"]
    assert [v.field for v in bad_email.error.field_violations] == ["fragments[2].identifiers.email"]
    assert profile.peers.identity.batch_calls == [3]
    assert await profile.count("fragments") == 3


async def test_each_change_is_published_on_the_bus_with_old_and_new_values(
    profile: RunningProfile, nats: EmbeddedNats
) -> None:
    customer = str(uuid.uuid4())
    await profile.stub.IngestProfileFragment(
        ingest(fragment("crm", {"user": {"firstName": "Ada"}}, customer_id=customer, hours_ago=2))
    )
    await profile.stub.IngestProfileFragment(
        ingest(fragment("support", {"user": {"city": "London"}}, customer_id=customer))
    )
    client = await connect_nats(NatsSettings(url=nats.url), name="test-reader")
    try:
        subscription = await client.jetstream().pull_subscribe(
            PROFILE_UPDATED, durable="test-reader", stream="CDP_PROFILE"
        )
        messages: list[Msg] = []
        while len(messages) < 2:
            messages.extend(await subscription.fetch(2 - len(messages), timeout=10))
    finally:
        await client.close()
    first, second = (profile_events_pb2.ProfileUpdated.FromString(m.data) for m in messages)
    assert (first.customer_id, first.version, second.version) == (customer, 1, 2)
    (change,) = second.changes
    assert change.path == "user.city" and change.source == "support"
    assert not change.HasField("old_value") and change.new_value.string_value == "London"
    assert json_format.MessageToDict(second.attributes) == {
        "user": {"firstName": "Ada", "city": "London"}
    }
    headers = messages[1].headers or {}
    assert headers["ce-subject"] == customer and "traceparent" in headers


async def test_awkward_values_survive_storage_and_each_event_of_a_batch_has_its_own_document(
    profile: RunningProfile, nats: EmbeddedNats
) -> None:
    """Values travel to PostgreSQL and back as JSON documents: text with quotes, escapes and
    non-Latin letters, large and fractional numbers, booleans, nested lists and objects
    merged whole must come back as they went in, and two fragments for one customer in one
    batch announce two versions, each with the document as it was after that fragment."""
    customer = str(uuid.uuid4())
    first: dict[str, Any] = {
        "user": {
            "firstName": 'Zoë "the \\ Analyst" 李',
            "tags": ["vip", "ünïcödé", "line\nbreak"],
            "scores": [[1, 2.5], [True, False], []],
        },
        "customer": {"lifetime_value": 9007199254740991, "ratio": 0.1, "orderCount": 3},
        "preferences": {"email": {"weekly": True, "topics": ["a", "b"]}, "empty": {}},
    }
    second = {"user": {"firstName": "Ada"}, "preferences": {"email": {"weekly": False}}}
    batch = profile_pb2.IngestProfileFragmentsRequest(
        fragments=[
            fragment("crm", first, customer_id=customer, hours_ago=2),
            fragment("crm", second, customer_id=customer, hours_ago=1),
        ]
    )
    response = await profile.stub.IngestProfileFragments(batch)
    assert [r.ingested.profile_version for r in response.results] == [1, 2]
    expected = {
        "user": {
            "firstName": "Ada",
            "tags": ["vip", "ünïcödé", "line\nbreak"],
            "scores": [[1, 2.5], [True, False], []],
        },
        "customer": {"lifetime_value": 9007199254740991, "ratio": 0.1, "orderCount": 3},
        "preferences": {"email": {"weekly": False, "topics": ["a", "b"]}},
    }
    unified = await get_profile(profile, customer)
    assert struct_to_dict(unified.attributes) == expected
    assert unified.provenance["preferences"].strategy == "deep_merge"
    assert unified.provenance["customer.lifetime_value"].strategy == "highest_value"

    client = await connect_nats(NatsSettings(url=nats.url), name="test-awkward")
    try:
        subscription = await client.jetstream().pull_subscribe(
            PROFILE_UPDATED, durable="test-awkward", stream="CDP_PROFILE"
        )
        messages: list[Msg] = []
        while len(messages) < 2:
            messages.extend(await subscription.fetch(2 - len(messages), timeout=10))
    finally:
        await client.close()
    events = [profile_events_pb2.ProfileUpdated.FromString(m.data) for m in messages]
    assert [(e.customer_id, e.version) for e in events] == [(customer, 1), (customer, 2)]
    first_document = struct_to_dict(events[0].attributes)
    assert first_document["user"]["firstName"] == first["user"]["firstName"]
    assert first_document["preferences"] == {"email": {"weekly": True, "topics": ["a", "b"]}}
    assert struct_to_dict(events[1].attributes) == expected
    (name,) = (c for c in events[1].changes if c.path == "user.firstName")
    assert (name.old_value.string_value, name.new_value.string_value) == (
        first["user"]["firstName"],
        "Ada",
    )


async def test_a_sync_fans_out_to_every_target_with_one_result_each(
    profile: RunningProfile,
) -> None:
    customer = str(uuid.uuid4())
    await profile.stub.IngestProfileFragment(
        ingest(
            fragment(
                "crm",
                {
                    "user": {"firstName": "Ada", "email": "Ada@Example.com", "tags": ["vip"]},
                    "account": {"companyName": "AE"},
                },
                customer_id=customer,
            )
        )
    )
    await profile.stub.IngestProfileFragment(
        ingest(
            fragment(
                "ecommerce",
                {"customer": {"totalSpent": 99.5, "orderCount": 3, "lastOrderDate": "2026-11-30"}},
                customer_id=customer,
            )
        )
    )
    response = await profile.stub.SyncProfile(
        profile_pb2.SyncProfileRequest(
            customer_id=customer, source="crm", targets=["mailchimp", "support", "analytics"]
        )
    )
    results = {r.platform: r for r in response.results}
    assert list(results) == ["mailchimp", "support", "analytics"]
    assert results["mailchimp"].success and results["mailchimp"].synced_at.seconds > 0
    assert not results["support"].success and "INTERNAL" in results["support"].error
    assert not results["analytics"].success and results["analytics"].error == (
        "no answer within 1 s"
    )
    mailchimp = profile.peers.connectors["mailchimp"]
    assert mailchimp.pushed == [
        {
            "merge_fields": {
                "FNAME": "Ada",
                "COMPANY": "AE",
                "TOTSPENT": 99.5,
                "ORDCOUNT": 3.0,
                "LASTORD": "2026-11-30",
            },
            "tags": [{"name": "vip", "status": "active"}],
        }
    ]
    assert mailchimp.emails == ["ada@example.com"]
    (ensured,) = mailchimp.ensured
    assert dict(ensured) == {
        "FNAME": connector_pb2.FIELD_TYPE_TEXT,
        "COMPANY": connector_pb2.FIELD_TYPE_TEXT,
        "TOTSPENT": connector_pb2.FIELD_TYPE_NUMBER,
        "ORDCOUNT": connector_pb2.FIELD_TYPE_NUMBER,
        "LASTORD": connector_pb2.FIELD_TYPE_DATE,
    }


async def statements_of_one_ingest(
    profile: RunningProfile, span_exporter: InMemorySpanExporter, customer: str, n: int
) -> list[str]:
    span_exporter.clear()
    await profile.stub.IngestProfileFragment(
        ingest(fragment("crm", {"user": {"visits": n, "tags": [f"t{n}"]}}, customer_id=customer))
    )
    spans = span_exporter.get_finished_spans()
    client = next(s for s in spans if s.kind == SpanKind.CLIENT and "Ingest" in s.name)
    return [
        str((s.attributes or {}).get("db.statement", ""))
        for s in sorted(spans, key=lambda s: s.start_time or 0)
        if s.context.trace_id == client.context.trace_id and "db.statement" in (s.attributes or {})
    ]


async def test_one_more_fragment_costs_the_same_statements_whatever_the_history(
    profile: RunningProfile, span_exporter: InMemorySpanExporter
) -> None:
    customer = str(uuid.uuid4())
    early = await statements_of_one_ingest(profile, span_exporter, customer, 1)
    batch = profile_pb2.IngestProfileFragmentsRequest(
        fragments=[
            fragment("crm", {"user": {"visits": n, "tags": [f"t{n}"]}}, customer_id=customer)
            for n in range(200)
        ]
    )
    await profile.stub.IngestProfileFragments(batch)
    late = await statements_of_one_ingest(profile, span_exporter, customer, 2)
    assert await profile.count("fragments") == 202
    assert early == late
    reads_of_history = [s for s in late if "FROM profile.fragments" in s]
    assert reads_of_history == []


async def test_personal_data_never_reaches_spans_or_logs(
    profile: RunningProfile,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    span_exporter.clear()
    secret = "grace.hopper@example.com"
    created = await profile.stub.IngestProfileFragment(
        ingest(fragment("crm", {"user": {"email": secret, "phone": "+14155552671"}}, email=secret))
    )
    await profile.stub.SyncProfile(
        profile_pb2.SyncProfileRequest(customer_id=created.customer_id, source="crm")
    )
    for span in span_exporter.get_finished_spans():
        text = str(dict(span.attributes or {})) + str([e.attributes for e in span.events])
        assert secret not in text and "+14155552671" not in text, span.name
    assert secret not in caplog.text


async def test_an_unknown_customer_has_no_profile(profile: RunningProfile) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await get_profile(profile, str(uuid.uuid4()))
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await get_profile(profile, "not-a-uuid")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
