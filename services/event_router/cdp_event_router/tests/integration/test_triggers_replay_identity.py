from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_events_pb2
from cdp_bus import NatsSettings, OutboxMessage, connect_nats
from cdp_bus.subjects import IDENTITY_FORGOTTEN, IDENTITY_MERGED
from cdp_event_router.settings import EventRouterSettings
from cdp_telemetry import Telemetry
from cdp_testing import eventually, wait_until

from .conftest import Peers, Router, start_router, stream_messages
from .fakes import customer_for

ADA = "5f0c6c1e-8d0e-4a5b-9a7c-1d2e3f4a5b6c"


def event(event_id: str, event_type: str, *, when: datetime, customer: str = ADA,
          source: str = "shopify", **properties: object) -> events_pb2.Event:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    message = events_pb2.Event(id=event_id, type=event_type, source=source, timestamp=stamp,
                               customer_id=customer)
    message.properties.update(properties)  # type: ignore[arg-type]
    return message


async def test_orders_and_opens_project_onto_profile_attributes(router: Router,
                                                               peers: Peers) -> None:
    day = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=[
        event("o-1", "order.completed", when=day, total=120.5),
        event("o-2", "order.completed", when=day + timedelta(days=2), total=80),
        event("m-1", "email.opened", when=day + timedelta(days=1), source="mailchimp"),
        event("m-2", "email.opened", when=day - timedelta(days=5), source="mailchimp"),
    ]))

    def merged_view() -> dict[str, object]:
        view: dict[str, object] = {}
        for fragment in peers.profile.fragments:
            for area, values in fragment["attributes"].items():
                view.setdefault(area, {}).update(values)  # type: ignore[attr-defined]
        return view

    await wait_until(lambda: merged_view().get("ecommerce", {}).get("order_count") == 2  # type: ignore[attr-defined]
                     and "email" in merged_view(), message="trigger fragments")
    view = merged_view()
    assert view["ecommerce"]["last_order_date"].startswith("2026-11-22")  # type: ignore[index]
    assert view["customer"]["lifetime_value"] == 200.5  # type: ignore[index]
    assert view["email"]["last_open_date"].startswith("2026-11-21")  # type: ignore[index]
    sources = {f["source"] for f in peers.profile.fragments}
    assert sources == {"shopify", "mailchimp"}
    assert all(f["customer_id"] == ADA for f in peers.profile.fragments)


async def test_a_redelivered_trigger_sets_the_same_values_not_double_counts(
    router: Router, peers: Peers
) -> None:
    day = datetime(2026, 11, 20, tzinfo=UTC)
    batch = events_pb2.PublishEventsRequest(events=[
        event("r-1", "order.completed", when=day, total=10)])
    await router.stub.PublishEvents(batch)
    await wait_until(lambda: len(peers.profile.fragments) >= 1, message="first fragment")
    await router.stub.PublishEvents(batch)  # a duplicate: stored once, nothing re-counted
    await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=[
        event("r-2", "order.completed", when=day + timedelta(hours=1), total=5)]))
    await wait_until(lambda: any(f["attributes"]["ecommerce"]["order_count"] == 2
                                 for f in peers.profile.fragments), message="second fragment")
    counts = [f["attributes"]["ecommerce"]["order_count"] for f in peers.profile.fragments]
    assert max(counts) == 2


async def test_triggers_wait_for_a_profile_service_that_is_down(router: Router,
                                                                peers: Peers) -> None:
    peers.profile.down = True
    await router.stub.PublishEvent(events_pb2.PublishEventRequest(event=event(
        "late-1", "order.completed", when=datetime(2026, 11, 1, tzinfo=UTC), total=3)))
    await wait_until(lambda: router.running.relay.published_total >= 1, message="published")
    assert peers.profile.fragments == []
    peers.profile.down = False
    await wait_until(lambda: len(peers.profile.fragments) == 1, timeout=20,
                     message="redelivered trigger")


async def test_replay_republishes_to_one_target_with_the_original_event_ids(
    router: Router,
) -> None:
    day = datetime(2026, 10, 1, tzinfo=UTC)
    await router.stub.PublishEvents(events_pb2.PublishEventsRequest(events=[
        event(f"p-{i}", "page.viewed", when=day + timedelta(minutes=i), source="web")
        for i in range(5)
    ]))
    await eventually(lambda: stream_messages(router.settings.nats.url,
                                             "cdp.routed.email.page.viewed", timeout=0.3),
                     lambda found: len(found) == 5, message="first delivery")
    since = Timestamp()
    since.FromDatetime(day + timedelta(minutes=2))
    replayed = await router.stub.ReplayEvents(events_pb2.ReplayEventsRequest(
        filter=events_pb2.EventFilter(types=["page.viewed"], since=since), target="email"))
    assert replayed.events_replayed == 3
    found = await eventually(lambda: stream_messages(router.settings.nats.url,
                                                     "cdp.routed.email.page.viewed",
                                                     timeout=0.3),
                             lambda found: len(found) == 8, message="replayed copies")
    replay_ids = [m.headers["ce-id"] for m in found if "cdp-replay" in m.headers]
    assert replay_ids == ["p-2", "p-3", "p-4"]


async def test_merges_repoint_events_and_forget_erases_them(router: Router) -> None:
    merged_away = str(uuid.uuid4())
    await router.stub.PublishEvent(events_pb2.PublishEventRequest(event=event(
        "x-1", "page.viewed", when=datetime(2026, 11, 1, tzinfo=UTC), customer=merged_away,
        source="web")))
    client = await connect_nats(NatsSettings(url=router.settings.nats.url), name="t")
    js = client.jetstream()

    async def announce(message: OutboxMessage) -> None:
        await js.publish(message.subject, message.event.data, headers=message.event.headers())

    await announce(OutboxMessage.of_proto(IDENTITY_MERGED, identity_events_pb2.CustomersMerged(
        merge_id="m", survivor_customer_id=ADA, merged_customer_id=merged_away), source="/t"))
    await eventually(lambda: router.stub.GetEvent(events_pb2.GetEventRequest(event_id="x-1")),
                     lambda found: found.event.customer_id == ADA, message="re-pointed event")
    await announce(OutboxMessage.of_proto(
        IDENTITY_FORGOTTEN, identity_events_pb2.CustomerForgotten(
            customer_id=ADA, merged_customer_ids=[merged_away]), source="/t"))
    await client.close()

    async def erased() -> bool:
        try:
            await router.stub.GetEvent(events_pb2.GetEventRequest(event_id="x-1"))
        except grpc.aio.AioRpcError as error:
            return error.code() == grpc.StatusCode.NOT_FOUND
        return False

    await wait_until(erased, message="erasure")


async def test_identify_events_resolve_every_identifier_they_link(
    router: Router, peers: Peers
) -> None:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    identify = events_pb2.Event(
        id="id-1", type="user.identified", source="web", timestamp=stamp,
        identifiers=common_pb2.Identifiers(user_id="u-7", anonymous_id="anon-7",
                                           email="ada@example.com"))
    response = await router.stub.PublishEvent(events_pb2.PublishEventRequest(event=identify))
    (seen,) = peers.identity.seen
    assert (seen.user_id, seen.anonymous_id, seen.email) == ("u-7", "anon-7", "ada@example.com")
    assert response.customer_id == customer_for(seen)


async def test_quarantine_keeps_invalid_events_for_review(
    router_settings: EventRouterSettings, telemetry: Telemetry
) -> None:
    settings = replace(router_settings, quarantine_invalid=True)
    task, stop, running = await start_router(settings, telemetry)
    from cdp.events.v1 import events_pb2_grpc
    from cdp_grpc import GrpcClientSettings, create_channel

    channel = create_channel(running.server.address, GrpcClientSettings())
    stub = events_pb2_grpc.EventRouterServiceStub(channel)
    try:
        response = await stub.PublishEvents(events_pb2.PublishEventsRequest(events=[
            event("ok-1", "order.completed", when=datetime.now(UTC)),
            event("bad-1", "Bad Type", when=datetime.now(UTC)),
        ]))
        assert [r.status for r in response.results] == [
            events_pb2.PUBLISH_STATUS_ACCEPTED, events_pb2.PUBLISH_STATUS_QUARANTINED]
        failed = await stub.ListFailedEvents(events_pb2.ListFailedEventsRequest())
        (kept,) = failed.events
        assert kept.event_id == "bad-1" and [v.field for v in kept.violations] == ["type"]
        assert '"Bad Type"' in kept.raw_json
    finally:
        await channel.close(None)
        stop.set()
        await task
