"""A unit of work: one transaction that rolls back unless committed.

Messages to publish are collected during the work and written by a `MessageWriter` (the
outbox) inside the same transaction, so "stored" and "will be published" commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class MessageWriter(Protocol):
    async def write(self, session: AsyncSession, messages: Sequence[Any]) -> None: ...

    def notify_committed(self) -> None: ...


class UnitOfWork:
    """`async with uow:` opens a transaction; leaving without `commit()` rolls it back."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        messages: MessageWriter | None = None,
    ) -> None:
        self._sessions = sessions
        self._writer = messages
        self._pending: list[Any] = []
        self._session: AsyncSession | None = None
        self._committed = False

    @property
    def session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("use the unit of work inside `async with`")
        return self._session

    def publish(self, message: Any) -> None:
        """Queues a message for the outbox; written at commit, dropped on rollback."""
        if self._writer is None:
            raise RuntimeError("this unit of work has no outbox")
        self._pending.append(message)

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        self._pending = []
        self._committed = False
        await self._session.begin()
        return self

    async def commit(self) -> None:
        if self._pending and self._writer is not None:
            await self._writer.write(self.session, self._pending)
        await self.session.commit()
        self._committed = True
        if self._pending and self._writer is not None:
            self._writer.notify_committed()
        self._pending = []

    async def rollback(self) -> None:
        await self.session.rollback()
        self._pending = []

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if not self._committed:
                await session.rollback()
        finally:
            await session.close()


UnitOfWorkFactory = Callable[[], UnitOfWork]
