"""Segmentation's unit of work: one transaction, every store on its own asyncpg connection."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdp_bus import OutboxMessage, SqlOutbox
from cdp_db import TracedConnection, UnitOfWork, driver_connection
from cdp_segmentation.adapters.memberships import MembershipStore, copy_to_outbox
from cdp_segmentation.adapters.read_model import ReadModel
from cdp_segmentation.adapters.segments import SegmentStore
from cdp_segmentation.adapters.sync_store import SyncStore


class SqlSegmentationUnitOfWork(UnitOfWork):
    connection: TracedConnection
    read_model: ReadModel
    memberships: MembershipStore
    segments: SegmentStore
    sync: SyncStore

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], outbox: SqlOutbox, tracer: trace.Tracer
    ) -> None:
        super().__init__(sessions, messages=outbox)
        self._outbox = outbox
        self._tracer = tracer
        self._copied = False

    async def __aenter__(self) -> SqlSegmentationUnitOfWork:
        await super().__aenter__()
        self._copied = False
        self.connection = TracedConnection(await driver_connection(self.session), self._tracer)
        self.read_model = ReadModel(self.connection)
        self.memberships = MembershipStore(self.connection)
        self.segments = SegmentStore(self.connection)
        self.sync = SyncStore(self.connection)
        return self

    async def publish_many(self, messages: Sequence[OutboxMessage]) -> None:
        """Writes many outbox rows now, by COPY (still inside the transaction)."""
        if messages:
            await copy_to_outbox(self.connection, messages)
            self._copied = True

    def mark_copied(self) -> None:
        """Outbox rows were written by COPY in this transaction: wake the relay at commit."""
        self._copied = True

    async def commit(self) -> None:
        await super().commit()
        if self._copied:
            # Rows written by COPY bypass the pending list that wakes the relay.
            self._outbox.notify_committed()
            self._copied = False
