"""Accepting events: validate, resolve identity, route, store once.

One call handles a batch set-based: validation in memory, one identity call for every event
that names no customer, one insert for all rows (idempotent by event id), one commit. An
event is acknowledged only once it is stored; publishing follows from the store (the relay),
so nothing acknowledged can be lost. Invalid events are rejected with the field named or,
when configured, kept in the failed-events table for review; nothing invalid is stored as an
event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from opentelemetry import trace

from cdp_bus.tracing import current_trace_headers
from cdp_db import Database, TracedConnection, driver_connection
from cdp_errors import DomainError, FieldViolation, InvalidArgument
from cdp_event_router.adapters import event_store
from cdp_event_router.adapters.event_store import EventRow
from cdp_event_router.domain.model import (
    EventIdentifiers,
    FailedEvent,
    IncomingEvent,
    Lane,
    PublishOutcome,
    PublishStatus,
)
from cdp_event_router.domain.routing import RoutingTable
from cdp_event_router.domain.validation import EventValidator

logger = logging.getLogger(__name__)


class IdentityResolver(Protocol):
    async def resolve(
        self, items: Sequence[tuple[EventIdentifiers, str]]
    ) -> list[str | DomainError]: ...


class RelayNotifier(Protocol):
    def notify(self, realtime: int, batched: int) -> None: ...


Encoder = Callable[[IncomingEvent, str, datetime], bytes]
RawJson = Callable[[IncomingEvent], str]


def _identity_key(identifiers: EventIdentifiers) -> tuple[object, ...]:
    return (identifiers.user_id, identifiers.email, identifiers.phone,
            identifiers.anonymous_id, identifiers.device_id, identifiers.platform_ids,
            identifiers.cookies)


class EventIngest:
    def __init__(
        self,
        database: Database,
        identity: IdentityResolver,
        routing: RoutingTable,
        validator: EventValidator,
        *,
        encode: Encoder,
        raw_json: RawJson,
        relay: RelayNotifier,
        tracer: trace.Tracer,
        quarantine_invalid: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._database = database
        self._identity = identity
        self._routing = routing
        self._validator = validator
        self._encode = encode
        self._raw_json = raw_json
        self._relay = relay
        self._tracer = tracer
        self._quarantine = quarantine_invalid
        self._clock = clock

    async def publish(self, events: Sequence[IncomingEvent], *,
                      paths: Sequence[str] | None = None) -> list[PublishOutcome]:
        """One outcome per event, in order. `paths` name the events in violations
        (`events[3]` by default, so `events[3].timestamp`)."""
        where = list(paths) if paths is not None else [f"events[{i}]" for i in range(len(events))]
        now = self._clock()
        outcomes: list[PublishOutcome | None] = [None] * len(events)
        failed: list[FailedEvent] = []
        valid: list[int] = []
        seen: dict[str, int] = {}
        for index, event in enumerate(events):
            violations = self._validator.validate(event, now)
            if violations:
                located = tuple(v.under(where[index]) for v in violations)
                status = PublishStatus.QUARANTINED if self._quarantine else PublishStatus.REJECTED
                outcomes[index] = PublishOutcome(event.id, status, violations=located)
                if self._quarantine:
                    failed.append(FailedEvent(event.id, event.type, event.source,
                                              self._raw_json(event), tuple(violations), now))
                continue
            if event.id in seen:
                # The same event twice in one call: stored once, like a retried publish.
                outcomes[index] = PublishOutcome(event.id, PublishStatus.DUPLICATE)
                continue
            seen[event.id] = index
            valid.append(index)
        customers = await self._resolve_customers([events[i] for i in valid])
        rows: list[EventRow] = []
        trace_json = json.dumps(current_trace_headers())
        for index, customer in zip(valid, customers, strict=True):
            event = events[index]
            if isinstance(customer, DomainError):
                refusal: Sequence[FieldViolation] = (
                    customer.violations if isinstance(customer, InvalidArgument)
                    else (FieldViolation("identifiers", str(customer)),))
                outcomes[index] = PublishOutcome(
                    event.id, PublishStatus.REJECTED,
                    violations=tuple(v.under(where[index]) for v in refusal),
                )
                continue
            targets = self._routing.targets_for(event)
            lane = self._routing.lane(event.type)
            assert event.timestamp is not None  # validated
            rows.append(EventRow(
                id=event.id, type=event.type, source=event.source, customer_id=customer,
                occurred_at=event.timestamp, received_at=now,
                properties_json=json.dumps(event.properties, separators=(",", ":")),
                targets=targets, lane=lane, payload=self._encode(event, customer, now),
                trace_json=trace_json,
            ))
            outcomes[index] = PublishOutcome(event.id, PublishStatus.ACCEPTED, customer, targets)
        stored = await self._store(rows, failed)
        duplicates = [row.id for row in rows if row.id not in stored]
        if duplicates:
            await self._describe_duplicates(duplicates, outcomes)
        realtime = sum(1 for r in rows if r.id in stored and r.lane is Lane.REALTIME)
        self._relay.notify(realtime=realtime, batched=len(stored) - realtime)
        for index, outcome in enumerate(outcomes):
            if outcome is not None and outcome.status is PublishStatus.DUPLICATE and \
                    not outcome.customer_id and events[index].id in seen:
                first = outcomes[seen[events[index].id]]
                if first is not None:
                    outcome.customer_id, outcome.targets = first.customer_id, first.targets
        return [o for o in outcomes if o is not None]

    async def _resolve_customers(
        self, events: Sequence[IncomingEvent]
    ) -> list[str | DomainError]:
        """Each event's customer: its own, or one identity call for all that name none.

        Identify and alias events carry every identifier they link, so resolving them ties
        those identifiers to one customer (merging in identity when they pointed at two).
        """
        unresolved: dict[tuple[object, ...], int] = {}
        requests: list[tuple[EventIdentifiers, str]] = []
        for event in events:
            if not event.customer_id:
                key = (*_identity_key(event.identifiers), event.source)
                if key not in unresolved:
                    unresolved[key] = len(requests)
                    requests.append((event.identifiers, event.source))
        answers = await self._identity.resolve(requests) if requests else []
        customers: list[str | DomainError] = []
        for event in events:
            if event.customer_id:
                customers.append(event.customer_id)
            else:
                key = (*_identity_key(event.identifiers), event.source)
                customers.append(answers[unresolved[key]])
        return customers

    async def _store(self, rows: Sequence[EventRow], failed: Sequence[FailedEvent]) -> set[str]:
        if not rows and not failed:
            return set()
        async with self._database.sessions() as session, session.begin():
            connection = TracedConnection(await driver_connection(session), self._tracer)
            stored = await event_store.insert_events(connection, rows)
            await event_store.insert_failed(connection, failed)
        return stored

    async def _describe_duplicates(self, ids: Sequence[str],
                                   outcomes: list[PublishOutcome | None]) -> None:
        async with self._database.pool.acquire() as raw:
            known = await event_store.customers_of(TracedConnection(raw, self._tracer), ids)
        wanted = set(ids)
        for outcome in outcomes:
            if outcome is not None and outcome.event_id in wanted and \
                    outcome.status is PublishStatus.ACCEPTED:
                customer, targets = known.get(outcome.event_id, ("", []))
                outcome.status = PublishStatus.DUPLICATE
                outcome.customer_id, outcome.targets = customer, tuple(targets)
