"""Keeping time-based memberships true as time passes.

A `withinLast N` condition turns false for a customer when the clock passes their value + N,
without any profile change. Each run re-evaluates, per segment with such conditions, only
the customers whose values the clock has moved past since the segment's last run (a range
scan on the field's index), under the exclusive membership lock, and records the instant it
evaluated at. Runs are idempotent, so replicas running them at once do no harm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from cdp_segmentation.domain.model import relative_conditions
from cdp_segmentation.service_layer.catalog import CatalogCache
from cdp_segmentation.service_layer.ports import Clock, UnitOfWorkFactory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimeRun:
    segments: int
    entered: int
    exited: int


class TimeReevaluator:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, cache: CatalogCache, *, clock: Clock
    ) -> None:
        self._uow = uow_factory
        self._cache = cache
        self._clock = clock

    async def run(self, now: datetime | None = None) -> TimeRun:
        now = now or self._clock()
        async with self._uow() as uow:
            catalog = await self._cache.locked(uow, exclusive=False)
            timed = [s.id for s in catalog.segments if relative_conditions(s.definition.criteria)]
        segments = entered = exited = 0
        for segment_id in timed:
            async with self._uow() as uow:
                catalog = await self._cache.locked(uow, exclusive=True)
                segment = catalog.segment(segment_id)
                if segment is None:
                    continue
                since = await uow.segments.time_evaluated_at(segment_id)
                if since is None or since >= now:
                    continue
                came, left, run = await uow.memberships.evaluate_segment(
                    segment, dict(catalog.fields.columns), now, since=since
                )
                if await uow.memberships.queue_staged(segment, run, now, publish=segment.realtime):
                    uow.mark_copied()
                await uow.segments.set_time_evaluated_at(segment_id, now)
                await uow.commit()
            segments += 1
            entered += came
            exited += left
            if came or left:
                logger.info(
                    "time re-evaluation of segment %s: %d entered, %d exited",
                    segment_id,
                    came,
                    left,
                )
        return TimeRun(segments, entered, exited)
