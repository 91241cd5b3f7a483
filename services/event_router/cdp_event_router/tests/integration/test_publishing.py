from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2
from cdp_embedded import to_asyncpg_dsn
from cdp_grpc import field_violations_of
from cdp_testing import eventually, wait_until

from .conftest import Peers, Router, stream_messages
from .fakes import customer_for


def event(event_id: str, event_type: str = "order.completed", *, source: str = "shopify",
          email: str = "ada@example.com", when: datetime | None = None,
          **properties: object) -> events_pb2.Event:
    stamp = Timestamp()
    stamp.FromDatetime(when or datetime.now(UTC))
    message = events_pb2.Event(id=event_id, type=event_type, source=source, timestamp=stamp,
                               identifiers=common_pb2.Identifiers(email=email))
    message.properties.update(properties)  # type: ignore[arg-type]
    return message


async def stored_count(router: Router) -> int:
    dsn, kwargs = to_asyncpg_dsn(router.settings.database.url)
    connection = await asyncpg.connect(dsn, **kwargs)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM event_router.events")
        return count
    finally:
        await connection.close()


async def test_a_batch_is_resolved_in_one_identity_call_stored_routed_and_broadcast(
    router: Router, peers: Peers
) -> None:
    events = [event(f"order-{i}", email=f"c{i % 3}@example.com", total=10 * i)
              for i in range(6)]
    response = await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=events))
    assert [r.status for r in response.results] == [events_pb2.PUBLISH_STATUS_ACCEPTED] * 6
    assert peers.identity.batch_calls == [3]  # one call, each identifier set once
    assert response.results[4].customer_id == customer_for(events[4].identifiers)
    # order.completed -> email, analytics, crm, advertising (the brief's table)
    assert list(response.results[0].targets) == ["email", "analytics", "crm", "advertising"]
    broadcast = await eventually(
        lambda: stream_messages(router.settings.nats.url, "cdp.events.order.completed"),
        lambda found: len(found) == 6, message="broadcast")
    routed = await stream_messages(router.settings.nats.url, "cdp.routed.crm.order.completed")
    assert len(routed) == 6
    headers = broadcast[0].headers
    assert headers["ce-specversion"] == "1.0" and headers["ce-type"] == "order.completed"
    assert headers["Nats-Msg-Id"] == headers["ce-id"] == "order-0"
    assert headers["ce-subject"] == response.results[0].customer_id
    assert routed[0].headers["Nats-Msg-Id"] == "order-0:crm"
    body = events_pb2.Event.FromString(broadcast[0].data)
    assert body.customer_id == response.results[0].customer_id
    assert body.HasField("received_at")


async def test_an_event_never_goes_back_to_its_source(router: Router) -> None:
    opened = event("open-1", "email.opened", source="mailchimp")
    viewed_from_mailchimp = event("view-1", "page.viewed", source="mailchimp")
    viewed_from_web = event("view-2", "page.viewed", source="web")
    response = await router.stub.PublishEvents(events_pb2.PublishEventsRequest(
        events=[opened, viewed_from_mailchimp, viewed_from_web]))
    assert list(response.results[0].targets) == ["analytics", "crm"]
    assert list(response.results[1].targets) == ["analytics", "advertising"]
    assert list(response.results[2].targets) == ["email", "analytics", "advertising"]
    other = await router.stub.PublishEvent(events_pb2.PublishEventRequest(
        event=event("login-1", "account.created", source="web")))
    assert list(other.targets) == ["analytics"]  # anything else -> analytics


async def test_a_retried_publish_is_no_duplicate(router: Router) -> None:
    batch = events_pb2.PublishEventsRequest(events=[event("same-1"), event("same-2")])
    first = await router.stub.PublishEvents(batch)
    again = await router.stub.PublishEvents(batch)
    inside = await router.stub.PublishEvents(events_pb2.PublishEventsRequest(
        events=[event("same-3"), event("same-3")]))
    assert [r.status for r in again.results] == [events_pb2.PUBLISH_STATUS_DUPLICATE] * 2
    assert again.results[0].customer_id == first.results[0].customer_id
    assert [r.status for r in inside.results] == [events_pb2.PUBLISH_STATUS_ACCEPTED,
                                                  events_pb2.PUBLISH_STATUS_DUPLICATE]
    assert await stored_count(router) == 3


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        (events_pb2.Event(type="order.completed", source="shopify"), "event.id"),
        (event("x-1", "Order Completed"), "event.type"),
        (event("x-2", source="myspace"), "event.source"),
        (event("x-3", when=datetime.now(UTC) + timedelta(days=3)), "event.timestamp"),
        (event("x-4", email=""), "event.identifiers"),
    ],
)
async def test_bad_events_are_rejected_naming_the_field_and_nothing_is_stored(
    router: Router, broken: events_pb2.Event, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.PublishEvent(events_pb2.PublishEventRequest(event=broken))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [f for f, _ in field_violations_of(caught.value)]
    assert await stored_count(router) == 0


async def test_a_batch_reports_each_bad_event_by_index_and_keeps_the_good_ones(
    router: Router,
) -> None:
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(12):
        deep = {"level": deep}
    response = await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=[
        event("good-1"), event("deep-1", nested=deep), event("good-2"),
        event("big-1", blob="x" * 40_000),
    ]))
    statuses = [r.status for r in response.results]
    assert statuses == [events_pb2.PUBLISH_STATUS_ACCEPTED, events_pb2.PUBLISH_STATUS_REJECTED,
                        events_pb2.PUBLISH_STATUS_ACCEPTED, events_pb2.PUBLISH_STATUS_REJECTED]
    assert [v.field for v in response.results[1].error.field_violations] == [
        "events[1].properties"]
    assert "40" in response.results[3].error.message
    assert await stored_count(router) == 2


async def test_identity_down_fails_the_call_and_stores_nothing(router: Router,
                                                               peers: Peers) -> None:
    peers.identity.down = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=[event("d-1")]))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await stored_count(router) == 0
    # An event naming its customer needs no identity call and goes through.
    known = event("d-2")
    known.customer_id = "5f0c6c1e-8d0e-4a5b-9a7c-1d2e3f4a5b6c"
    ok = await router.stub.PublishEvent(events_pb2.PublishEventRequest(event=known))
    assert ok.status == events_pb2.PUBLISH_STATUS_ACCEPTED


async def test_stored_events_are_read_back_by_id_and_by_filter(router: Router) -> None:
    base = datetime(2026, 11, 1, tzinfo=UTC)
    await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=[
        event(f"e-{i}", "email.opened" if i % 2 else "order.completed", source="mailchimp",
              when=base + timedelta(hours=i))
        for i in range(10)
    ]))
    got = await router.stub.GetEvent(events_pb2.GetEventRequest(event_id="e-3"))
    assert got.event.type == "email.opened" and list(got.targets) == ["analytics", "crm"]
    since, until = Timestamp(), Timestamp()
    since.FromDatetime(base + timedelta(hours=2))
    until.FromDatetime(base + timedelta(hours=8))
    listed = [r.event.id async for r in router.stub.ListEvents(events_pb2.ListEventsRequest(
        filter=events_pb2.EventFilter(types=["email.opened"], since=since, until=until)))]
    assert listed == ["e-3", "e-5", "e-7"]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await router.stub.GetEvent(events_pb2.GetEventRequest(event_id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_real_time_events_go_out_at_once_and_batched_ones_by_size_or_age(
    router: Router,
) -> None:
    await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=[
        event("unsub-1", "email.unsubscribed", source="mailchimp"),
        event("view-1", "product.viewed", source="web"),
    ]))
    realtime = await eventually(
        lambda: stream_messages(router.settings.nats.url, "cdp.events.email.unsubscribed",
                                timeout=0.2),
        lambda found: len(found) == 1, message="real-time event")
    assert realtime[0].headers["ce-id"] == "unsub-1"
    # The batched lane flushes on age (0.2 s in these settings).
    await eventually(
        lambda: stream_messages(router.settings.nats.url, "cdp.events.product.viewed",
                                timeout=0.2),
        lambda found: len(found) == 1, message="batched event")


async def test_one_trace_covers_the_call_its_sql_and_the_publish(
    router: Router, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    await router.stub.PublishEvent(events_pb2.PublishEventRequest(
        event=event("traced-1", "email.unsubscribed", source="mailchimp")))

    def spans_of_the_call() -> list[object]:
        spans = span_exporter.get_finished_spans()
        client = [s for s in spans if s.kind == SpanKind.CLIENT and "PublishEvent" in s.name]
        if not client:
            return []
        trace_id = client[0].context.trace_id
        return [s for s in spans if s.context.trace_id == trace_id]

    await wait_until(lambda: any(getattr(s, "kind", None) == SpanKind.PRODUCER
                                 for s in spans_of_the_call()), message="producer span")
    names = {(s.kind, s.name) for s in spans_of_the_call()}  # type: ignore[attr-defined]
    assert (SpanKind.SERVER, "/cdp.events.v1.EventRouterService/PublishEvent") in names
    assert (SpanKind.CLIENT, "INSERT") in names
    assert (SpanKind.PRODUCER, "cdp.events.email.unsubscribed publish") in names
