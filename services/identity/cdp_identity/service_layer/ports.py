"""What the handlers need from storage, as protocols the SQL adapters and test fakes meet."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from cdp_identity.domain.events import CustomerCreated
from cdp_identity.domain.identifiers import IdentityKey
from cdp_identity.domain.model import IdentityMap


class IdentityRepository(Protocol):
    async def find_owners(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, str]:
        """The customer owning each key that is already stored."""
        ...

    async def create_customer(self, now: datetime) -> str: ...

    async def attach(
        self,
        customer_id: str,
        keys: Sequence[IdentityKey],
        *,
        source_platform: str,
        now: datetime,
    ) -> set[IdentityKey]:
        """Stores `keys` for `customer_id`; returns the ones stored (others already exist)."""
        ...

    async def mark_verified(self, keys: Sequence[IdentityKey], now: datetime) -> None: ...

    async def identity_map(self, customer_id: str) -> IdentityMap | None: ...


class IdentityUnitOfWork(Protocol):
    @property
    def identities(self) -> IdentityRepository: ...

    async def __aenter__(self) -> IdentityUnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    def publish_event(self, event: CustomerCreated) -> None: ...
