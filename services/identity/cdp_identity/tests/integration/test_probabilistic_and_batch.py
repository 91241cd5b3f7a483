from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2
from cdp_grpc import field_violations_of

from .conftest import RunningIdentity, request

ADA = identity_pb2.PersonAttributes(
    given_name="Ada", family_name="Lovelace", birth_date="1815-12-10",
    street_address="12 St James Square", locality="London", postcode="SW1Y 4JH",
)


async def test_a_noisy_record_of_a_known_person_matches_probabilistically(
    identity: RunningIdentity,
) -> None:
    original = await identity.stub.ResolveIdentity(request(email="ada@example.com",
                                                           attributes=ADA))
    noisy = identity_pb2.PersonAttributes(
        given_name="ada", family_name="Lovelac", birth_date="1815-10-12",
        street_address="12 st james sq", locality="londn", postcode="SW1Y 4JH",
    )
    matched = await identity.stub.ResolveIdentity(
        request(email="a.lovelace@work.example", attributes=noisy, probabilistic=True,
                source="shopify"))
    assert matched.customer_id == original.customer_id
    assert matched.method == identity_pb2.MATCH_METHOD_PROBABILISTIC
    assert 0.85 <= matched.confidence <= 0.9999
    assert {"given_name", "family_name", "postcode"} <= set(matched.matched_on)
    found = await identity.stub.GetIdentityMap(
        identity_pb2.GetIdentityMapRequest(customer_id=original.customer_id))
    confidences = {e.value: e.confidence for e in found.identities}
    assert confidences["ada@example.com"] == 1.0
    assert confidences["a.lovelace@work.example"] == pytest.approx(matched.confidence)


async def test_without_permission_or_resemblance_a_new_customer_is_made(
    identity: RunningIdentity,
) -> None:
    original = await identity.stub.ResolveIdentity(request(email="ada@example.com",
                                                           attributes=ADA))
    not_allowed = await identity.stub.ResolveIdentity(
        request(email="other@example.com", attributes=ADA, probabilistic=False))
    someone_else = await identity.stub.ResolveIdentity(request(
        email="grace@example.com", probabilistic=True,
        attributes=identity_pb2.PersonAttributes(given_name="Grace", family_name="Hopper",
                                                 birth_date="1906-12-09", postcode="SW1Y 4JH"),
    ))
    assert not_allowed.method == identity_pb2.MATCH_METHOD_NEW
    assert someone_else.method == identity_pb2.MATCH_METHOD_NEW
    assert original.customer_id not in (not_allowed.customer_id, someone_else.customer_id)


async def test_a_batch_of_thousands_is_resolved_in_a_handful_of_statements(
    identity: RunningIdentity, span_exporter: InMemorySpanExporter
) -> None:
    known = await identity.stub.ResolveIdentity(request(email="known@example.com"))
    items = [request(email=f"person-{i}@example.com") for i in range(2000)]
    items[10] = request(email="known@example.com")
    items[11] = request(email="person-5@example.com", device_id="shared-device")  # same as #5
    items[12] = request(email="broken")
    alone_first = await identity.stub.ResolveIdentity(request(email="solo@example.com"))
    alone = await identity.stub.ResolveIdentity(
        request(email="solo@example.com", device_id="solo-device"))
    assert alone.customer_id == alone_first.customer_id
    span_exporter.clear()
    response = await identity.stub.BatchResolveIdentities(
        identity_pb2.BatchResolveIdentitiesRequest(items=items))
    results = response.results
    assert len(results) == 2000
    assert results[10].resolution.customer_id == known.customer_id
    assert results[10].resolution.method == identity_pb2.MATCH_METHOD_DETERMINISTIC
    assert results[11].resolution.customer_id == results[5].resolution.customer_id
    # As if resolved alone after #5: matched on the email, the new device id attached.
    assert list(results[11].resolution.matched_on) == list(alone.matched_on) == ["email"]
    assert [v.field for v in results[12].error.field_violations] == ["items[12].identifiers.email"]
    created = {r.resolution.customer_id for i, r in enumerate(results) if i not in (10, 11, 12)}
    assert len(created) == 1997
    statements = [s for s in span_exporter.get_finished_spans()
                  if s.attributes and "db.statement" in s.attributes]
    assert len(statements) <= 15, [s.name for s in statements]
    valid = items[:12] + items[13:100]
    again = await identity.stub.BatchResolveIdentities(
        identity_pb2.BatchResolveIdentitiesRequest(items=valid))
    assert [r.resolution.customer_id for r in again.results] == [
        r.resolution.customer_id for r in results[:12] + results[13:100]]
    assert all(r.resolution.method == identity_pb2.MATCH_METHOD_DETERMINISTIC
               for r in again.results)


@pytest.mark.parametrize(
    ("identifiers", "field"),
    [
        (common_pb2.Identifiers(email="a" * 300 + "@example.com"), "identifiers.email"),
        (common_pb2.Identifiers(phone="+1 555"), "identifiers.phone"),
        (common_pb2.Identifiers(platform_ids=[common_pb2.PlatformId(platform="myspace", id="1")]),
         "identifiers.platform_ids[0].platform"),
        (common_pb2.Identifiers(user_id="null", anonymous_id="anonymous"), "identifiers"),
        (common_pb2.Identifiers(device_id="d" * 256), "identifiers.device_id"),
    ],
)
async def test_bad_identifiers_are_rejected_by_field_and_nothing_is_written(
    identity: RunningIdentity, identifiers: common_pb2.Identifiers, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.stub.ResolveIdentity(
            identity_pb2.ResolveIdentityRequest(identifiers=identifiers))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations_of(caught.value)] == [field]
    probe = await identity.stub.ResolveIdentity(request(email="probe@example.com"))
    assert probe.created  # the store was empty: nothing was written by the bad request


async def test_an_oversized_batch_is_rejected_whole(identity: RunningIdentity) -> None:
    items = [request(email=f"p{i}@example.com") for i in range(10_001)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.stub.BatchResolveIdentities(
            identity_pb2.BatchResolveIdentitiesRequest(items=items))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations_of(caught.value)] == ["items"]


async def test_bad_attributes_and_source_are_rejected_by_field(identity: RunningIdentity) -> None:
    bad = identity_pb2.ResolveIdentityRequest(
        identifiers=common_pb2.Identifiers(email="ada@example.com"),
        attributes=identity_pb2.PersonAttributes(birth_date="10/12/1815"),
        source_platform="myspace",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.stub.ResolveIdentity(bad)
    assert sorted(f for f, _ in field_violations_of(caught.value)) == [
        "attributes.birth_date", "source_platform"]
