"""Following identity: merges re-point events, unmerges restore them, forget deletes them."""

from __future__ import annotations

import logging

from opentelemetry import trace

from cdp_db import Database, TracedConnection
from cdp_event_router.adapters import event_store

logger = logging.getLogger(__name__)


class IdentityFollower:
    def __init__(self, database: Database, *, tracer: trace.Tracer) -> None:
        self._database = database
        self._tracer = tracer

    async def merged(self, survivor: str, merged: str) -> int:
        async with self._database.pool.acquire() as raw:
            return await event_store.repoint_customer(TracedConnection(raw, self._tracer),
                                                      merged, survivor)

    async def unmerged(self, restored: str) -> int:
        async with self._database.pool.acquire() as raw:
            return await event_store.restore_customer(TracedConnection(raw, self._tracer),
                                                      restored)

    async def forgotten(self, customer_ids: list[str]) -> int:
        """Erasure: every stored event of the person goes (their copies on the streams age
        out with the stream's retention)."""
        async with self._database.pool.acquire() as raw:
            deleted = await event_store.delete_customers(TracedConnection(raw, self._tracer),
                                                         customer_ids)
        logger.info("deleted %d events of a forgotten customer", deleted)
        return deleted
