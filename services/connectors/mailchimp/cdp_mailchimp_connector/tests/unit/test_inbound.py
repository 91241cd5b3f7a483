from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from cdp_errors import InvalidArgument, Unauthenticated
from cdp_mailchimp_connector.service_layer.inbound import InboundDelivery, WebhookReceiver

from .fakes import FakeInboundStore, FlakyRouter, RecordingProfiles

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
BODY = urlencode({"type": "subscribe", "fired_at": "2026-12-04 11:59:00", "data[id]": "h",
                  "data[email]": "ada@example.com", "data[merges][FNAME]": "Ada"})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


async def test_a_webhook_is_stored_once_however_often_it_is_delivered() -> None:
    store = FakeInboundStore()
    receiver = WebhookReceiver(store, clock=lambda: NOW)
    assert await receiver.receive(BODY, "") == 2  # one event, one fragment
    assert await receiver.receive(BODY, "") == 0
    assert await store.pending() == 2


async def test_with_a_secret_an_unsigned_webhook_is_refused_and_nothing_stored() -> None:
    store = FakeInboundStore()
    with pytest.raises(Unauthenticated):
        await WebhookReceiver(store, secret="k", clock=lambda: NOW).receive(BODY, "")
    with pytest.raises(InvalidArgument):
        await WebhookReceiver(store, clock=lambda: NOW).receive("type=bogus", "")
    assert store.items == {}


async def test_items_wait_while_the_router_is_down_and_go_out_once_it_is_back() -> None:
    store, clock = FakeInboundStore(), Clock()
    router, profiles = FlakyRouter(failures=2), RecordingProfiles()
    await WebhookReceiver(store, clock=clock).receive(BODY, "")
    delivery = InboundDelivery(store, router=router, profiles=profiles, clock=clock)
    await delivery.deliver_due()
    assert len(profiles.received) == 1 and router.received == []
    assert await store.pending() == 1
    assert await delivery.deliver_due() == 0  # postponed: not due yet
    for _ in range(2):
        clock.now += timedelta(minutes=10)
        await delivery.deliver_due()
    assert [e.type for e in router.received] == ["email.subscribed"]
    assert await store.pending() == 0


async def test_without_a_configured_peer_items_are_kept() -> None:
    store = FakeInboundStore()
    await WebhookReceiver(store, clock=lambda: NOW).receive(BODY, "")
    await InboundDelivery(store, router=None, profiles=None, clock=lambda: NOW).deliver_due()
    assert await store.pending() == 2
