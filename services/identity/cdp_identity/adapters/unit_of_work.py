"""The identity service's unit of work over PostgreSQL, with the outbox."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdp_bus import SqlOutbox
from cdp_db import UnitOfWork
from cdp_identity.adapters import messages
from cdp_identity.adapters.repository import SqlIdentityRepository
from cdp_identity.domain.events import CustomerCreated


class SqlIdentityUnitOfWork(UnitOfWork):
    identities: SqlIdentityRepository

    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: SqlOutbox) -> None:
        super().__init__(sessions, messages=outbox)

    async def __aenter__(self) -> SqlIdentityUnitOfWork:
        await super().__aenter__()
        self.identities = SqlIdentityRepository(self.session)
        return self

    def publish_event(self, event: CustomerCreated) -> None:
        self.publish(messages.to_outbox(event))
