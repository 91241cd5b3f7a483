"""What the resolver needs from storage: a unit of work whose repository it drives."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from cdp_identity.adapters.repository import SqlIdentityRepository
from cdp_identity.domain.events import IdentityEvent


class IdentityUnitOfWork(Protocol):
    @property
    def identities(self) -> SqlIdentityRepository: ...

    async def __aenter__(self) -> IdentityUnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    def publish_event(self, event: IdentityEvent) -> None: ...
