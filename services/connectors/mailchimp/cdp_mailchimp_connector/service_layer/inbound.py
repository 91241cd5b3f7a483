"""Inbound: webhooks and email activity become stored items first, delivered to the event
router and the profile service afterwards, with retry.

A webhook is answered 200 only after its items are committed to the connector's own
`inbound_items` table, so neither a crash nor a peer that is down loses anything: the
delivery worker sends what is due, marks what the peer took (or refused for good), and
postpones the rest with a growing delay. Items keep their ids (derived from the payload),
so a redelivered webhook or re-pulled activity is stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from cdp_errors import InvalidArgument, Unauthenticated
from cdp_mailchimp_connector.adapters.mailchimp_api import MailchimpApi, MailchimpError
from cdp_mailchimp_connector.domain.inbound import (
    Fragment,
    Inbound,
    UnifiedEvent,
    WebhookError,
    from_activity,
    from_webhook,
    parse_timestamp,
)
from cdp_mailchimp_connector.service_layer.ports import EventRouter, InboundStore, ProfileSink
from cdp_resilience import CircuitOpenError, RetryPolicy

logger = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_SECONDS = 300


def utc_now() -> datetime:
    return datetime.now(UTC)


def verify_signature(secret: str, header: str, body: str, now: float) -> bool:
    """`X-Mailchimp-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, within
    five minutes of `now`."""
    parts = dict(
        part.strip().split("=", 1) for part in header.split(",") if "=" in part
    )
    try:
        stamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - stamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _event_item(event: UnifiedEvent) -> tuple[str, str, dict[str, Any]]:
    body = asdict(event)
    body["timestamp"] = event.timestamp.isoformat()
    return event.id, "event", body


def _fragment_item(fragment: Fragment, key: str) -> tuple[str, str, dict[str, Any]]:
    body = asdict(fragment)
    body["observed_at"] = fragment.observed_at.isoformat()
    return key, "fragment", body


def event_from_item(body: dict[str, Any]) -> UnifiedEvent:
    return UnifiedEvent(**{**body, "timestamp": datetime.fromisoformat(body["timestamp"])})


def fragment_from_item(body: dict[str, Any]) -> Fragment:
    return Fragment(**{**body, "observed_at": datetime.fromisoformat(body["observed_at"])})


class WebhookReceiver:
    """Checks, parses and stores one webhook delivery."""

    def __init__(
        self,
        store: InboundStore,
        *,
        secret: str = "",
        clock: Callable[[], datetime] = utc_now,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.secret = secret
        self._clock = clock
        self._on_stored = on_stored

    async def receive(self, body: str, signature: str) -> int:
        """Stores the webhook's items; returns how many were new. Raises Unauthenticated for
        a missing or wrong signature (when a secret is set) and InvalidArgument for a body
        that is not a Mailchimp webhook."""
        if self.secret and not verify_signature(
            self.secret, signature, body, self._clock().timestamp()
        ):
            raise Unauthenticated("missing, stale or wrong X-Mailchimp-Signature")
        try:
            inbound = from_webhook(body)
        except WebhookError as error:
            raise InvalidArgument.single("body", str(error)) from None
        stored = await self.store.add(items_of(inbound), self._clock())
        self._on_stored()
        return stored


def items_of(inbound: Inbound) -> list[tuple[str, str, dict[str, Any]]]:
    items = [_event_item(event) for event in inbound.events]
    for index, fragment in enumerate(inbound.fragments):
        # A fragment's id follows its webhook's first event when there is one, else its data.
        seed = inbound.events[0].id if inbound.events else hashlib.sha256(
            repr(sorted(asdict(fragment).items())).encode()
        ).hexdigest()
        items.append(_fragment_item(fragment, f"{seed}:fragment:{index}"))
    return items


# Peers that are down are tried again after 1 s, 2 s, 4 s, ... up to 5 minutes.
DELIVERY_BACKOFF = RetryPolicy(max_attempts=1_000_000, base_delay=1.0, max_delay=300.0)


class InboundDelivery:
    """Sends due items to the event router and the profile service until they take them."""

    def __init__(
        self,
        store: InboundStore,
        *,
        router: EventRouter | None,
        profiles: ProfileSink | None,
        batch_size: int = 500,
        idle_seconds: float = 1.0,
        backoff: RetryPolicy = DELIVERY_BACKOFF,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.router = router
        self.profiles = profiles
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.backoff = backoff
        self._clock = clock
        self._wakeup = asyncio.Event()
        self.delivered_total = 0

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:  # storage trouble: try again after the idle pause
                logger.exception("inbound delivery round failed")
                sent = 0
            if sent < self.batch_size:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self.idle_seconds)
                except TimeoutError:
                    pass

    async def deliver_due(self) -> int:
        """One round: returns how many items were settled."""
        now = self._clock()
        items = await self.store.due(now, self.batch_size)
        if not items:
            return 0
        events = [i for i in items if i.kind == "event"]
        fragments = [i for i in items if i.kind == "fragment"]
        settled: list[str] = []
        postponed: dict[str, int] = {}
        for group in (events, fragments):
            if not group:
                continue
            try:
                if group is events and self.router is not None:
                    accepted = await self.router.publish([event_from_item(i.body)
                                                          for i in group])
                elif group is fragments and self.profiles is not None:
                    accepted = await self.profiles.ingest([fragment_from_item(i.body)
                                                           for i in group])
                else:
                    # No address configured for this peer yet: the items wait.
                    postponed.update({i.id: i.attempts for i in group})
                    continue
            except Exception as error:  # the peer is down or failing: keep them for later
                logger.warning("inbound %s delivery failed, will retry: %s",
                               group[0].kind, type(error).__name__)
                postponed.update({i.id: i.attempts for i in group})
                continue
            for item, done in zip(group, accepted, strict=True):
                if done:
                    settled.append(item.id)
                else:
                    postponed[item.id] = item.attempts
        if settled:
            await self.store.delivered(settled, now)
            self.delivered_total += len(settled)
        if postponed:
            # One delay per round keyed on the most-tried item: peers fail as a whole.
            attempts = max(postponed.values()) + 1
            until = now + timedelta(seconds=self.backoff.backoff_cap(attempts) *
                                    (0.5 + 0.5 * self.backoff.random()))
            await self.store.postpone(list(postponed), until)
        return len(settled)


class ActivityPoller:
    """Pulls opens and clicks per sent campaign, from where the last pull stopped."""

    def __init__(
        self,
        api: MailchimpApi,
        store: InboundStore,
        *,
        list_id: Callable[[], Any],
        interval_seconds: float = 900.0,
        lookback_days: int = 30,
        clock: Callable[[], datetime] = utc_now,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.api = api
        self.store = store
        self._list_id = list_id
        self.interval_seconds = interval_seconds
        self.lookback_days = lookback_days
        self._clock = clock
        self._on_stored = on_stored

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except (MailchimpError, CircuitOpenError) as error:
                logger.warning("activity pull failed, next try in %.0f s: %s",
                               self.interval_seconds, error)
            except Exception:
                logger.exception("activity pull failed")
            await asyncio.sleep(max(0.0, self.interval_seconds - (time.monotonic() - started)))

    async def poll_once(self) -> int:
        """Stores new activity of every campaign sent to the audience lately; returns how
        many new events were stored."""
        list_id = await self._list_id()
        since = (self._clock() - timedelta(days=self.lookback_days)).replace(microsecond=0)
        campaigns = await self.api.call(
            "GET /campaigns",
            lambda c: c.campaigns.list(list_id=list_id, status="sent", count=1000,
                                       since_send_time=since.isoformat()),
        ) or {}
        stored = 0
        for campaign in campaigns.get("campaigns") or []:
            stored += await self._campaign(list_id, str(campaign["id"]))
        return stored

    async def _campaign(self, list_id: str, campaign_id: str) -> int:
        cursor_name = f"activity:{campaign_id}"
        cursor = await self.store.cursor(cursor_name)
        newest = cursor or ""
        offset = 0
        stored = 0
        while True:
            kwargs: dict[str, Any] = {"count": 1000, "offset": offset}
            if cursor:
                kwargs["since"] = cursor
            page = await self.api.call(
                "GET /reports/{id}/email-activity",
                lambda c, kw=kwargs: c.reports.get_email_activity_for_campaign(  # type: ignore[misc]
                    campaign_id, **kw
                ),
            ) or {}
            entries = page.get("emails") or []
            events = [e for entry in entries for e in from_activity(campaign_id, list_id, entry)]
            if events:
                stored += await self.store.add([_event_item(e) for e in events], self._clock())
                newest = max([newest, *(e.timestamp.isoformat() for e in events)])
            offset += len(entries)
            if not entries or offset >= int(page.get("total_items", 0)):
                break
        if newest and newest != cursor and stored:
            # Moves only after everything up to `newest` is stored: a crash re-pulls, and
            # the items' ids make the re-pull store nothing twice.
            # One second back: activity stamped in the same second as the newest but recorded
            # after this pull is not skipped (Mailchimp's `since` is exclusive).
            moved = parse_timestamp(newest) - timedelta(seconds=1)
            await self.store.set_cursor(cursor_name, moved.isoformat())
        if stored:
            self._on_stored()
        return stored
