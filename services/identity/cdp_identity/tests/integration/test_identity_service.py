from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_events_pb2, identity_pb2
from cdp_bus import NatsSettings, connect_nats
from cdp_bus.subjects import IDENTITY_CREATED
from cdp_embedded import EmbeddedNats, to_asyncpg_dsn
from cdp_grpc import field_violations_of

from .conftest import RunningIdentity


def resolve_request(
    *, email: str = "", phone: str = "", user_id: str = ""
) -> identity_pb2.ResolveIdentityRequest:
    return identity_pb2.ResolveIdentityRequest(
        identifiers=common_pb2.Identifiers(email=email, phone=phone, user_id=user_id),
        source_platform="crm",
    )


async def count_rows(database_url: str, table: str) -> int:
    dsn, kwargs = to_asyncpg_dsn(database_url)
    connection = await asyncpg.connect(dsn, **kwargs)
    try:
        count: int = await connection.fetchval(f"SELECT count(*) FROM identity.{table}")
        return count
    finally:
        await connection.close()


async def test_resolve_creates_then_finds_a_customer_by_normalised_email(
    identity: RunningIdentity,
) -> None:
    created = await identity.stub.ResolveIdentity(resolve_request(email="Ada@Example.com"))
    found = await identity.stub.ResolveIdentity(resolve_request(email="ada@example.com "))
    assert created.method == identity_pb2.MATCH_METHOD_NEW and created.created
    assert found.customer_id == created.customer_id
    assert found.method == identity_pb2.MATCH_METHOD_DETERMINISTIC
    assert list(found.matched_on) == ["email"]
    assert found.confidence == 1.0


async def test_customer_id_and_phone_resolve_and_show_in_the_identity_map(
    identity: RunningIdentity,
) -> None:
    first = await identity.stub.ResolveIdentity(
        resolve_request(user_id="crm-42", email="ada@example.com", phone="(415) 555-2671")
    )
    by_user = await identity.stub.ResolveIdentity(resolve_request(user_id="crm-42"))
    by_phone = await identity.stub.ResolveIdentity(resolve_request(phone="+14155552671"))
    assert by_user.customer_id == by_phone.customer_id == first.customer_id
    identity_map = await identity.stub.GetIdentityMap(
        identity_pb2.GetIdentityMapRequest(customer_id=first.customer_id)
    )
    kinds = sorted((e.identity_type, e.value) for e in identity_map.identities)
    assert kinds == [("email", "ada@example.com"), ("phone", "+14155552671"), ("user_id", "crm-42")]
    assert identity_map.primary_email == "ada@example.com"
    assert identity_map.primary_phone == "+14155552671"
    assert all(e.status == identity_pb2.IDENTITY_STATUS_ACTIVE for e in identity_map.identities)


async def test_simultaneous_resolves_of_one_new_email_make_one_customer(
    identity: RunningIdentity,
) -> None:
    results = await asyncio.gather(
        *(
            identity.stub.ResolveIdentity(resolve_request(email="race@example.com"))
            for _ in range(24)
        )
    )
    assert len({r.customer_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert await count_rows(identity.settings.database.url, "customers") == 1
    assert await count_rows(identity.settings.database.url, "identities") == 1


@pytest.mark.parametrize(
    ("identifiers", "field"),
    [
        (common_pb2.Identifiers(), "identifiers"),
        (common_pb2.Identifiers(email="not-an-email"), "identifiers.email"),
        (common_pb2.Identifiers(phone="12"), "identifiers.phone"),
    ],
)
async def test_malformed_requests_get_invalid_argument_and_store_nothing(
    identity: RunningIdentity, identifiers: common_pb2.Identifiers, field: str
) -> None:
    request = identity_pb2.ResolveIdentityRequest(identifiers=identifiers)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.stub.ResolveIdentity(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in field_violations_of(caught.value)] == [field]
    assert "not-an-email" not in (caught.value.details() or "")
    assert await count_rows(identity.settings.database.url, "customers") == 0
    assert await count_rows(identity.settings.database.url, "identities") == 0


async def test_unknown_customer_is_not_found_and_a_bad_id_is_invalid(
    identity: RunningIdentity,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await identity.stub.GetIdentityMap(
            identity_pb2.GetIdentityMapRequest(customer_id="00000000-0000-4000-8000-000000000000")
        )
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await identity.stub.GetIdentityMap(identity_pb2.GetIdentityMapRequest(customer_id="x"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_batch_resolve_answers_each_item_and_reports_bad_ones_by_index(
    identity: RunningIdentity,
) -> None:
    response = await identity.stub.BatchResolveIdentities(
        identity_pb2.BatchResolveIdentitiesRequest(
            items=[
                resolve_request(email="one@example.com"),
                resolve_request(email="broken"),
                resolve_request(email="ONE@example.com"),
            ]
        )
    )
    first, bad, same = response.results
    assert first.resolution.customer_id == same.resolution.customer_id
    assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [v.field for v in bad.error.field_violations] == ["items[1].identifiers.email"]


async def test_one_trace_covers_the_call_the_handling_and_its_sql(
    identity: RunningIdentity, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    await identity.stub.ResolveIdentity(resolve_request(email="traced@example.com"))
    spans = span_exporter.get_finished_spans()
    client = next(s for s in spans if s.kind == SpanKind.CLIENT and "ResolveIdentity" in s.name)
    trace_spans = [s for s in spans if s.context.trace_id == client.context.trace_id]
    server = [s for s in trace_spans if s.kind == SpanKind.SERVER]
    sql = [s for s in trace_spans if s.name in ("SELECT", "INSERT", "UPDATE")]
    assert len(server) == 1 and server[0].parent is not None
    assert server[0].parent.span_id == client.context.span_id
    assert len(sql) >= 3
    for span in trace_spans:
        assert "traced@example.com" not in str(dict(span.attributes or {}))


async def test_new_customers_are_announced_on_the_bus(
    identity: RunningIdentity, nats: EmbeddedNats
) -> None:
    created = await identity.stub.ResolveIdentity(resolve_request(email="news@example.com"))
    client = await connect_nats(NatsSettings(url=nats.url), name="test-reader")
    try:
        subscription = await client.jetstream().pull_subscribe(
            IDENTITY_CREATED, durable="test-reader", stream="CDP_IDENTITY"
        )
        (message,) = await subscription.fetch(1, timeout=10)
    finally:
        await client.close()
    body = identity_events_pb2.CustomerCreated.FromString(message.data)
    assert body.customer_id == created.customer_id
    assert list(body.identity_types) == ["email"]
    assert message.headers is not None
    assert message.headers["ce-type"] == IDENTITY_CREATED
    assert message.headers["ce-specversion"] == "1.0"
    assert message.headers["Nats-Msg-Id"] == message.headers["ce-id"]
    assert "traceparent" in message.headers
    assert b"news@example.com" not in message.data
