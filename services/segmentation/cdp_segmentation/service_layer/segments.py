"""Segment definitions (create, get, list, update, delete) and queries on members.

Create and update evaluate the segment against the whole read model in the same
transaction, under the exclusive membership lock, so stored membership always matches the
stored criteria; realtime segments announce who entered or left.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime

from cdp_errors import InvalidArgument
from cdp_segmentation.adapters.sql_compiler import count_query, sample_query
from cdp_segmentation.adapters.unit_of_work import SqlSegmentationUnitOfWork
from cdp_segmentation.domain.criteria import DEFAULT_LIMITS, CriteriaLimits, check_criteria
from cdp_segmentation.domain.definitions import SegmentInput, check_definition
from cdp_segmentation.domain.model import (
    Member,
    RawGroup,
    Segment,
    SegmentDefinition,
    SegmentView,
)
from cdp_segmentation.domain.schedules import next_run
from cdp_segmentation.service_layer.catalog import CatalogCache
from cdp_segmentation.service_layer.ports import Clock, UnitOfWorkFactory

MAX_SAMPLE = 1000
DEFAULT_SAMPLE = 10


@dataclass(frozen=True)
class Preview:
    count: int
    sample: tuple[str, ...]


def parse_segment_id(raw: str, field: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise InvalidArgument.single(field, "is not a segment id (a UUID)") from None


class SegmentService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        cache: CatalogCache,
        *,
        platforms: Collection[str],
        clock: Clock,
        members_page_size: int = 1000,
        limits: CriteriaLimits = DEFAULT_LIMITS,
    ) -> None:
        self._uow = uow_factory
        self._cache = cache
        self._platforms = frozenset(platforms)
        self._clock = clock
        self._page = members_page_size
        self._limits = limits

    # ---- definitions ----------------------------------------------------------------------

    async def _check(
        self, uow: SqlSegmentationUnitOfWork, given: SegmentInput
    ) -> SegmentDefinition:
        schema = await self._cache.schema(uow)
        return check_definition(given, schema, platforms=self._platforms, limits=self._limits)

    async def create(self, given: SegmentInput) -> SegmentView:
        now = self._clock()
        async with self._uow() as uow:
            definition = await self._check(uow, given)
            await self._cache.locked(uow, exclusive=True)
            segment = Segment(str(uuid.uuid4()), definition, created_at=now, updated_at=now)
            await uow.segments.insert(segment)
            await uow.segments.set_platforms(
                segment.id, definition.platforms, self._next_runs(segment, now)
            )
            await self._evaluate_all(uow, segment, now)
            await uow.segments.bump_version()
            view = await self._view(uow, segment)
            await uow.commit()
        return view

    async def update(self, segment_id: str, given: SegmentInput) -> SegmentView:
        segment_id = parse_segment_id(segment_id, "segment.id")
        now = self._clock()
        async with self._uow() as uow:
            definition = await self._check(uow, given)
            await self._cache.locked(uow, exclusive=True)
            current = await uow.segments.get(segment_id, for_update=True)
            segment = Segment(
                segment_id,
                definition,
                created_at=current.created_at,
                updated_at=now,
                revision=current.revision + 1,
            )
            await uow.segments.update(segment)
            added = await uow.segments.set_platforms(
                segment_id, definition.platforms, self._next_runs(segment, now)
            )
            # A platform new to the segment has none of its members yet.
            await uow.memberships.queue_all_members(segment_id, added)
            await self._evaluate_all(uow, segment, now)
            await uow.segments.bump_version()
            view = await self._view(uow, segment)
            await uow.commit()
        return view

    async def delete(self, segment_id: str) -> None:
        segment_id = parse_segment_id(segment_id, "segment_id")
        async with self._uow() as uow:
            await self._cache.locked(uow, exclusive=True)
            await uow.segments.delete(segment_id)
            await uow.segments.bump_version()
            await uow.commit()

    async def get(self, segment_id: str) -> SegmentView:
        segment_id = parse_segment_id(segment_id, "segment_id")
        async with self._uow() as uow:
            segment = await uow.segments.get(segment_id)
            return await self._view(uow, segment)

    async def all(self) -> list[SegmentView]:
        async with self._uow() as uow:
            segments = await uow.segments.all()
            ids = [s.id for s in segments]
            counts = await uow.segments.member_counts(ids)
            status = await uow.segments.sync_status(ids)
        return [
            SegmentView(s, counts.get(s.id, 0), tuple(status.get(s.id, ()))) for s in segments
        ]

    def _next_runs(self, segment: Segment, now: datetime) -> dict[str, datetime | None]:
        following = next_run(segment.definition.schedule, now)
        return dict.fromkeys(segment.definition.platforms, following)

    async def _view(self, uow: SqlSegmentationUnitOfWork, segment: Segment) -> SegmentView:
        counts = await uow.segments.member_counts([segment.id])
        status = await uow.segments.sync_status([segment.id])
        return SegmentView(segment, counts.get(segment.id, 0), tuple(status.get(segment.id, ())))

    async def _evaluate_all(
        self, uow: SqlSegmentationUnitOfWork, segment: Segment, now: datetime
    ) -> None:
        catalog = await self._cache.locked(uow, exclusive=True)
        _, _, run = await uow.memberships.evaluate_segment(
            segment, dict(catalog.fields.columns), now
        )
        written = await uow.memberships.queue_staged(segment, run, now, publish=segment.realtime)
        if written:
            uow.mark_copied()
        await uow.segments.set_time_evaluated_at(segment.id, now)

    # ---- members --------------------------------------------------------------------------

    async def count(self, segment_id: str) -> int:
        """Members the criteria select now (not the stored membership)."""
        segment_id = parse_segment_id(segment_id, "segment_id")
        async with self._uow() as uow:
            segment = await uow.segments.get(segment_id)
            catalog = await self._cache.locked(uow, exclusive=False)
            query = count_query(
                segment.definition.criteria, dict(catalog.fields.columns), self._clock()
            )
            await _custom_plans(uow)
            value: int = await uow.connection.fetchval(query.sql, *query.params)
            return value

    async def members(self, segment_id: str, limit: int = 0) -> AsyncIterator[list[Member]]:
        """Stored members in pages, each read in its own short transaction (keyset by
        customer id), so memory stays flat and no transaction stays open while a slow
        reader drains the stream."""
        segment_id = parse_segment_id(segment_id, "segment_id")
        if limit < 0:
            raise InvalidArgument.single("limit", "must not be negative")
        async with self._uow() as uow:
            await uow.segments.get(segment_id)
        after: str | None = None
        remaining = limit or None
        while remaining is None or remaining > 0:
            size = self._page if remaining is None else min(self._page, remaining)
            async with self._uow() as uow:
                page = await uow.memberships.page(segment_id, after=after, limit=size)
            if not page:
                return
            yield page
            if remaining is not None:
                remaining -= len(page)
            if len(page) < size:
                return
            after = page[-1].customer_id

    async def preview(self, criteria: RawGroup | None, sample_size: int) -> Preview:
        if sample_size < 0 or sample_size > MAX_SAMPLE:
            raise InvalidArgument.single("sample_size", f"must be 0 to {MAX_SAMPLE}")
        now = self._clock()
        async with self._uow() as uow:
            schema = await self._cache.schema(uow)
            checked = check_criteria(
                criteria, schema, platforms=self._platforms, limits=self._limits
            )
            catalog = await self._cache.locked(uow, exclusive=False)
            columns = dict(catalog.fields.columns)
            await _custom_plans(uow)
            counted = count_query(checked, columns, now)
            total: int = await uow.connection.fetchval(counted.sql, *counted.params)
            sampled = sample_query(checked, columns, now, sample_size or DEFAULT_SAMPLE)
            rows = await uow.connection.fetch(sampled.sql, *sampled.params)
        return Preview(total, tuple(str(r["customer_id"]) for r in rows))


async def _custom_plans(uow: SqlSegmentationUnitOfWork) -> None:
    # A segment-wide query is planned for its values (500 selects most customers, 50,000
    # almost none), as a hand-written query with literals would be, not with a generic plan.
    await uow.connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
