"""The service's clockwork: time-based re-evaluation and scheduled syncs.

Every `sync_poll_seconds` it syncs what is due (scheduled runs whose time has come, realtime
segments with a waiting delta, erasures, retries whose back-off has passed); every
`reevaluate_seconds` it re-evaluates withinLast conditions. Both are idempotent and take
their own locks, so every replica may run a scheduler.
"""

from __future__ import annotations

import asyncio
import logging

from cdp_segmentation.service_layer.ports import Clock
from cdp_segmentation.service_layer.sync import SegmentSyncer
from cdp_segmentation.service_layer.time_passing import TimeReevaluator

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        reevaluator: TimeReevaluator,
        syncer: SegmentSyncer,
        *,
        clock: Clock,
        poll_seconds: float,
        reevaluate_seconds: float,
    ) -> None:
        self._reevaluator = reevaluator
        self._syncer = syncer
        self._clock = clock
        self._poll = poll_seconds
        self._reevaluate = reevaluate_seconds
        self.ticks = 0

    async def run(self) -> None:
        """Runs until cancelled; a failing tick is logged and the next one tries again."""
        loop = asyncio.get_running_loop()
        next_reevaluation = loop.time()
        while True:
            try:
                if loop.time() >= next_reevaluation:
                    await self._reevaluator.run(self._clock())
                    next_reevaluation = loop.time() + self._reevaluate
                await self._syncer.run_due(self._clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scheduler tick failed; trying again at the next tick")
            self.ticks += 1
            await asyncio.sleep(self._poll)
