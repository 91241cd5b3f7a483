"""The profile service's unit of work over PostgreSQL, with the outbox and the inbox."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdp_bus import Inbox, SqlOutbox
from cdp_db import UnitOfWork
from cdp_profile.adapters import messages
from cdp_profile.adapters.repository import SqlProfileRepository
from cdp_profile.adapters.tables import SCHEMA
from cdp_profile.domain.events import ProfileEvent


class SqlProfileUnitOfWork(UnitOfWork):
    profiles: SqlProfileRepository

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], outbox: SqlOutbox, inbox: Inbox
    ) -> None:
        super().__init__(sessions, messages=outbox)
        self._inbox = inbox

    async def __aenter__(self) -> SqlProfileUnitOfWork:
        await super().__aenter__()
        self.profiles = SqlProfileRepository(self.session)
        return self

    def publish_event(self, event: ProfileEvent) -> None:
        # Serialized now: the handler goes on changing its working copy of the document.
        self.publish(messages.to_outbox(event))

    async def claim_message(self, consumer: str, message_id: str) -> bool:
        return await self._inbox.claim_message(self.session, consumer, message_id)


def inbox() -> Inbox:
    return Inbox(SCHEMA)
