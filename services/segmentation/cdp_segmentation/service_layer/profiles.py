"""Applying profile changes: the read model, then only the changed customers' memberships.

One batch of `cdp.profile.updated` / `cdp.profile.deleted` events is one transaction: claim
the event ids (a redelivered event changes nothing), upsert the read model (a stale version
changes nothing), re-evaluate every segment for exactly the customers whose rows changed,
queue each platform's delta and, for realtime segments, write `cdp.segment.membership` to the
outbox. Either all of it commits or none of it, so a crash never leaves the read model ahead
of the memberships, or an entry without its event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdp_segmentation.adapters.messages import membership_message
from cdp_segmentation.adapters.read_model import Deletion, ProfileRow
from cdp_segmentation.adapters.unit_of_work import SqlSegmentationUnitOfWork
from cdp_segmentation.domain.documents import normalize_profile
from cdp_segmentation.domain.model import FieldType
from cdp_segmentation.service_layer.catalog import CatalogCache
from cdp_segmentation.service_layer.ports import Clock, UnitOfWorkFactory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProfileChanged:
    message_id: str
    customer_id: str
    version: int
    attributes: Mapping[str, Any]
    # Field path -> the platform its new value came from (the event's changes).
    sources: Mapping[str, str]
    occurred_at: datetime


@dataclass(frozen=True)
class ProfileRemoved:
    message_id: str
    customer_id: str
    # Set when the profile was merged into another customer's; empty when erased.
    merged_into: str
    occurred_at: datetime


ProfileEvent = ProfileChanged | ProfileRemoved


@dataclass(frozen=True)
class Applied:
    profiles_changed: int
    entered: int
    exited: int


class ProfileEventHandler:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        cache: CatalogCache,
        *,
        consumer: str,
        email_field: str,
        clock: Clock,
        max_learned_fields: int = 5000,
    ) -> None:
        self._uow = uow_factory
        self._cache = cache
        self._consumer = consumer
        self._email_field = email_field
        self._clock = clock
        self._max_learned = max_learned_fields
        # (path, type, source) already recorded as learned: most events add nothing new.
        self._learned_seen: set[tuple[str, FieldType, str]] = set()
        self._learned_full = False

    async def apply(self, events: Sequence[ProfileEvent]) -> Applied:
        if not events:
            return Applied(0, 0, 0)
        now = self._clock()
        async with self._uow() as uow:
            catalog = await self._cache.locked(uow, exclusive=False)
            fresh = await uow.read_model.claim_messages(
                self._consumer, [e.message_id for e in events]
            )
            # The newest event per customer decides (later in the batch wins ties).
            latest: dict[str, ProfileEvent] = {}
            for event in events:
                if event.message_id not in fresh:
                    continue
                held = latest.get(event.customer_id)
                if held is None or _newer(event, held):
                    latest[event.customer_id] = event
            columns = list(catalog.fields.columns.values())
            types = catalog.fields.types
            rows: list[ProfileRow] = []
            deletions: list[Deletion] = []
            observed: set[tuple[str, FieldType, str]] = set()
            for event in latest.values():
                if isinstance(event, ProfileRemoved):
                    deletions.append(
                        Deletion(event.customer_id, event.occurred_at, not event.merged_into)
                    )
                    continue
                normalized = normalize_profile(
                    event.attributes, types, email_path=self._email_field
                )
                rows.append(
                    ProfileRow(
                        customer_id=event.customer_id,
                        version=event.version,
                        occurred_at=event.occurred_at,
                        email=normalized.email,
                        document=normalized.document,
                        typed=normalized.typed,
                    )
                )
                for path, kind in normalized.observed.items():
                    observed.add((path, kind, event.sources.get(path, "")))
            changed = await uow.read_model.upsert(rows, columns)
            removed = await uow.read_model.delete(deletions, columns)
            learned = await self._learn(uow, observed, now)
            customers = [*changed, *removed]
            changes = await uow.memberships.evaluate_customers(catalog.plan, customers, now)
            forgotten = [
                d.customer_id for d in deletions if d.forgotten and d.customer_id in removed
            ]
            await uow.memberships.forget(forgotten)
            await uow.memberships.requeue_changed_emails(
                [customer for customer, email_changed in changed.items() if email_changed]
            )
            realtime = catalog.realtime_ids
            for change in changes:
                if change.segment_id in realtime:
                    uow.publish(membership_message(change))
            await uow.commit()
        self._learned_seen.update(learned)
        entered = sum(1 for c in changes if c.change.value == "entered")
        return Applied(len(customers), entered, len(changes) - entered)

    async def _learn(
        self,
        uow: SqlSegmentationUnitOfWork,
        observed: set[tuple[str, FieldType, str]],
        now: datetime,
    ) -> set[tuple[str, FieldType, str]]:
        """Records the new sightings; returns them (remembered once the caller commits)."""
        new = observed - self._learned_seen
        if not new or self._learned_full:
            return set()
        if await uow.read_model.learned_count() >= self._max_learned:
            self._learned_full = True
            logger.warning(
                "%d undeclared fields learned: no more are learned (declare the fields "
                "segments use in the attribute schema)",
                self._max_learned,
            )
            return set()
        await uow.read_model.remember_learned(sorted(new), now)
        return new


def _newer(event: ProfileEvent, held: ProfileEvent) -> bool:
    if isinstance(event, ProfileChanged) and isinstance(held, ProfileChanged):
        return event.version >= held.version
    return event.occurred_at >= held.occurred_at
