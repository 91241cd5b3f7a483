"""In-memory stand-ins for the identity unit of work, for handler tests without I/O."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType

from cdp_identity.domain.events import CustomerCreated
from cdp_identity.domain.identifiers import IdentityKey
from cdp_identity.domain.model import IdentityMap, IdentityStatus, StoredIdentity


@dataclass
class FakeStore:
    customers: dict[str, datetime] = field(default_factory=dict)
    identities: dict[IdentityKey, StoredIdentity] = field(default_factory=dict)
    events: list[CustomerCreated] = field(default_factory=list)


class FakeIdentityRepository:
    def __init__(self, store: FakeStore, staged: FakeStore) -> None:
        self._store = store
        self._staged = staged

    def _all(self) -> dict[IdentityKey, StoredIdentity]:
        return {**self._store.identities, **self._staged.identities}

    async def find_owners(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, str]:
        known = self._all()
        return {key: known[key].customer_id for key in keys if key in known}

    async def create_customer(self, now: datetime) -> str:
        customer_id = str(uuid.uuid4())
        self._staged.customers[customer_id] = now
        return customer_id

    async def attach(
        self, customer_id: str, keys: Sequence[IdentityKey], *, source_platform: str, now: datetime
    ) -> set[IdentityKey]:
        known = self._all()
        stored = set()
        for key in keys:
            if key not in known:
                self._staged.identities[key] = StoredIdentity(
                    key, customer_id, IdentityStatus.ACTIVE, 1.0, source_platform, now, now
                )
                stored.add(key)
        return stored

    async def mark_verified(self, keys: Sequence[IdentityKey], now: datetime) -> None:
        for key in keys:
            current = self._store.identities[key]
            self._staged.identities[key] = StoredIdentity(
                key,
                current.customer_id,
                current.status,
                current.confidence,
                current.source_platform,
                current.first_seen_at,
                now,
            )

    async def identity_map(self, customer_id: str) -> IdentityMap | None:
        created = self._store.customers.get(customer_id)
        if created is None:
            return None
        mine = tuple(i for i in self._store.identities.values() if i.customer_id == customer_id)
        return IdentityMap(customer_id, mine, created, created)


class FakeIdentityUnitOfWork:
    """Changes are staged and applied to the shared store only on commit."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self._staged = FakeStore()
        self.identities = FakeIdentityRepository(store, self._staged)

    async def __aenter__(self) -> FakeIdentityUnitOfWork:
        self._staged = FakeStore()
        self.identities = FakeIdentityRepository(self._store, self._staged)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._staged = FakeStore()

    async def commit(self) -> None:
        self._store.customers.update(self._staged.customers)
        self._store.identities.update(self._staged.identities)
        self._store.events.extend(self._staged.events)
        self._staged = FakeStore()

    def publish_event(self, event: CustomerCreated) -> None:
        self._staged.events.append(event)
