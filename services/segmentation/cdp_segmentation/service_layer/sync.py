"""Syncing segment membership to platforms: the delta since the last successful sync, in
chunks, or a full mirror.

Per (segment, platform), one sync runs at a time across replicas (an advisory lock held on
its own connection for the whole run). A scheduled run finding another running skips its
turn (the next tick sends whatever is left); an explicit SyncSegment waits for it, then
sends what is left, so a caller is not refused for a race it cannot see.

A delta sync walks the pending delta in `seq` order, at most `chunk_size` additions and
`chunk_size` removals per connector call; what a call took is removed from the delta in
one transaction with recording what the platform now holds. A call that fails changes
nothing, so the next attempt sends the same delta again: nothing is skipped, and nothing a
platform acknowledged is sent again. Members a platform refuses for good (e.g. not in the
Mailchimp audience) leave the delta and are counted as failed; members it refuses for now
stay for the next attempt.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from cdp_errors import DomainError, FailedPrecondition
from cdp_segmentation.adapters.sync_store import Applied, DueReason
from cdp_segmentation.domain.model import Segment
from cdp_segmentation.domain.schedules import next_run
from cdp_segmentation.service_layer.ports import Clock, ConnectorPort, UnitOfWorkFactory
from cdp_segmentation.service_layer.segments import parse_segment_id
from cdp_telemetry import redact

logger = logging.getLogger(__name__)

class SyncLock(Protocol):
    """Enters the cross-replica lock for one (segment, platform), waiting up to
    `wait_seconds` for a holder to finish; yields False when another still holds it."""

    def __call__(
        self, segment_id: str, platform: str, *, wait_seconds: float = 0.0
    ) -> AbstractAsyncContextManager[bool]: ...


@dataclass(frozen=True)
class SyncOptions:
    chunk_size: int = 500
    call_timeout: float = 60.0
    retry_base: float = 5.0
    retry_max: float = 300.0
    max_full_resync_members: int = 200_000
    busy_wait: float = 120.0


@dataclass(frozen=True)
class PlatformResult:
    platform: str
    success: bool
    error: str
    permanent: bool
    synced_at: datetime
    records_synced: int
    records_failed: int
    calls: int = 0


class SegmentSyncer:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        connectors: ConnectorPort,
        lock: SyncLock,
        *,
        options: SyncOptions,
        clock: Clock,
    ) -> None:
        self._uow = uow_factory
        self._connectors = connectors
        self._lock = lock
        self._options = options
        self._clock = clock

    async def sync_segment(
        self, segment_id: str, *, full_resync: bool, deadline: float | None = None
    ) -> list[PlatformResult]:
        """SyncSegment: every platform of the segment now, one result each. A sync of the
        same platform already running is waited for (at most `busy_wait` seconds, and not
        past `deadline`, a `time.monotonic()` instant)."""
        segment_id = parse_segment_id(segment_id, "segment_id")
        async with self._uow() as uow:
            segment = await uow.segments.get(segment_id)
        results = []
        for platform in segment.definition.platforms:
            wait = self._options.busy_wait
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            results.append(
                await self.sync_platform(
                    segment, platform, full_resync=full_resync, wait_seconds=max(wait, 0.0)
                )
            )
        return results

    async def run_due(self, now: datetime | None = None) -> list[PlatformResult]:
        """Every (segment, platform) whose schedule is due, whose realtime delta waits, or
        that has an erasure to send."""
        now = now or self._clock()
        async with self._uow() as uow:
            due = await uow.sync.due(now)
            segments = {s.id: s for s in await uow.segments.all()}
        results = []
        for item in due:
            segment = segments.get(item.segment_id)
            if segment is None:
                continue
            results.append(
                await self.sync_platform(
                    segment,
                    item.platform,
                    full_resync=False,
                    scheduled=item.reason is DueReason.SCHEDULE,
                    erasures_only=item.reason is DueReason.ERASURE,
                )
            )
        return results

    async def sync_platform(
        self,
        segment: Segment,
        platform: str,
        *,
        full_resync: bool,
        scheduled: bool = False,
        erasures_only: bool = False,
        wait_seconds: float = 0.0,
    ) -> PlatformResult:
        async with self._lock(segment.id, platform, wait_seconds=wait_seconds) as acquired:
            started = self._clock()
            if not acquired:
                return PlatformResult(
                    platform, False, "a sync of this segment to this platform is running",
                    False, started, 0, 0,
                )
            progress = _Progress()
            error = ""
            permanent = False
            try:
                if full_resync:
                    await self._mirror(segment, platform, progress)
                else:
                    await self._delta(segment, platform, progress, erasures_only=erasures_only)
            except DomainError as failure:
                error = redact(str(failure))[:500]
                permanent = isinstance(failure, FailedPrecondition)
            if not error and progress.retryable:
                error = f"{progress.retryable} member(s) refused for now; they stay in the delta"
            finished = self._clock()
            success = not error
            await self._record(
                segment, platform, started, finished, full_resync, success, progress, error,
                permanent, scheduled,
            )
        if error:
            logger.warning("sync of segment %s to %s failed: %s", segment.id, platform, error)
        return PlatformResult(
            platform, success, error, permanent, finished, progress.added + progress.removed,
            progress.failed, progress.calls,
        )

    # ---- the delta ------------------------------------------------------------------------

    async def _delta(
        self, segment: Segment, platform: str, progress: _Progress, *, erasures_only: bool
    ) -> None:
        async with self._uow() as uow:
            high = await uow.sync.high_water(segment.id, platform)
        after_addition = after_removal = 0
        while True:
            async with self._uow() as uow:
                chunk = await uow.sync.chunk(
                    segment.id,
                    platform,
                    limit=self._options.chunk_size,
                    up_to_seq=high,
                    after_addition=after_addition,
                    after_removal=after_removal,
                    erasures_only=erasures_only,
                )
            if not chunk:
                return
            if chunk.additions:
                after_addition = chunk.additions[-1].seq
            if chunk.removals:
                after_removal = chunk.removals[-1].seq
            done: list[tuple[str, int]] = []
            add: list[tuple[str, str]] = []
            remove: list[tuple[str, str]] = []
            seq_of: dict[str, int] = {}
            for addition in chunk.additions:
                if addition.email is None:
                    # Nothing to key the member by on the platform; it can never be sent.
                    done.append((addition.customer_id, addition.seq))
                    progress.failed += 1
                    continue
                add.append((addition.customer_id, addition.email))
                seq_of[addition.customer_id] = addition.seq
                if addition.previous_email and addition.previous_email != addition.email:
                    # The member's email changed: the platform holds the old address.
                    remove.append((addition.customer_id, addition.previous_email))
            for removal in chunk.removals:
                if removal.email is None or removal.shared:
                    # Never sent, or another member keeps that address in the segment.
                    done.append((removal.customer_id, removal.seq))
                    continue
                remove.append((removal.customer_id, removal.email))
                seq_of[removal.customer_id] = removal.seq
            held: dict[str, str] = {}
            released: list[str] = []
            if add or remove:
                reply = await self._connectors.sync_membership(
                    platform,
                    segment_id=segment.id,
                    segment_name=segment.name,
                    add=add,
                    remove=remove,
                    full_resync=False,
                    timeout=self._options.call_timeout,
                )
                progress.calls += 1
                failed = {f.key: f for f in reply.failures}
                for customer, email in add:
                    failure = failed.get(customer)
                    if failure is None:
                        held[customer] = email
                        progress.added += 1
                    elif failure.permanent:
                        progress.failed += 1
                    else:
                        progress.retryable += 1
                        continue
                    done.append((customer, seq_of[customer]))
                for removal in chunk.removals:
                    if removal.customer_id not in seq_of:
                        continue
                    failure = failed.get(removal.customer_id)
                    if failure is not None and not failure.permanent:
                        progress.retryable += 1
                        continue
                    if failure is None:
                        progress.removed += 1
                    else:
                        progress.failed += 1
                    released.append(removal.customer_id)
                    done.append((removal.customer_id, removal.seq))
            async with self._uow() as uow:
                await uow.sync.apply(
                    segment.id, platform, Applied(done=done, held=held, released=released),
                    self._clock(),
                )
                await uow.commit()

    # ---- a full mirror --------------------------------------------------------------------

    async def _mirror(self, segment: Segment, platform: str, progress: _Progress) -> None:
        async with self._uow() as uow:
            total = await uow.sync.member_total(segment.id)
            if total > self._options.max_full_resync_members:
                raise FailedPrecondition(
                    f"the segment has {total} members; a full re-sync sends at most "
                    f"{self._options.max_full_resync_members} (CDP_SEGMENTATION_MAX_FULL_RESYNC_"
                    "MEMBERS); sync the delta instead",
                    reason="SEGMENT_TOO_LARGE",
                )
            high = await uow.sync.high_water(segment.id, platform)
            members = await uow.sync.members_with_email(segment.id)
        add = [(customer, email) for customer, email in members if email]
        progress.failed += len(members) - len(add)
        reply = await self._connectors.sync_membership(
            platform,
            segment_id=segment.id,
            segment_name=segment.name,
            add=add,
            remove=(),
            full_resync=True,
            timeout=self._options.call_timeout,
        )
        progress.calls += 1
        progress.removed += reply.removed
        failed = {f.key: f for f in reply.failures}
        held = {customer: email for customer, email in add if customer not in failed}
        retry = [key for key, failure in failed.items() if not failure.permanent]
        progress.added += len(held)
        progress.retryable += len(retry)
        progress.failed += len(failed) - len(retry)
        async with self._uow() as uow:
            await uow.sync.replace_platform_members(
                segment.id, platform, held, up_to_seq=high, retry=retry, now=self._clock()
            )
            await uow.commit()

    # ---- results --------------------------------------------------------------------------

    async def _record(
        self,
        segment: Segment,
        platform: str,
        started: datetime,
        finished: datetime,
        full_resync: bool,
        success: bool,
        progress: _Progress,
        error: str,
        permanent: bool,
        scheduled: bool,
    ) -> None:
        async with self._uow() as uow:
            failures = await uow.sync.consecutive_failures(segment.id, platform)
            delay = min(self._options.retry_base * 2**failures, self._options.retry_max)
            await uow.sync.record_run(
                segment.id,
                platform,
                started_at=started,
                finished_at=finished,
                full_resync=full_resync,
                success=success,
                calls=progress.calls,
                added=progress.added,
                removed=progress.removed,
                failed=progress.failed,
                error=error,
                permanent=permanent,
                retry_at=None if success else finished + timedelta(seconds=delay),
                next_run_at=next_run(segment.definition.schedule, finished),
                advance_schedule=scheduled,
            )
            await uow.commit()


@dataclass
class _Progress:
    calls: int = 0
    added: int = 0
    removed: int = 0
    failed: int = 0
    retryable: int = 0

