"""The identity service's unit of work over PostgreSQL, with the outbox."""

from __future__ import annotations

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdp_bus import SqlOutbox
from cdp_db import TracedConnection, UnitOfWork, driver_connection
from cdp_identity.adapters import messages
from cdp_identity.adapters.repository import SqlIdentityRepository
from cdp_identity.domain.events import IdentityEvent


class SqlIdentityUnitOfWork(UnitOfWork):
    """One transaction; the repository talks asyncpg on the transaction's own connection."""

    identities: SqlIdentityRepository

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: SqlOutbox,
        tracer: trace.Tracer,
    ) -> None:
        super().__init__(sessions, messages=outbox)
        self._tracer = tracer

    async def __aenter__(self) -> SqlIdentityUnitOfWork:
        await super().__aenter__()
        connection = await driver_connection(self.session)
        self.identities = SqlIdentityRepository(TracedConnection(connection, self._tracer))
        return self

    def publish_event(self, event: IdentityEvent) -> None:
        self.publish(messages.to_outbox(event))
