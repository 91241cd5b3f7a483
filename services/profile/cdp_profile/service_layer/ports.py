"""What the handlers need from storage, the identity service and the connectors, as
protocols the adapters and the test fakes meet."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

from cdp_errors import DomainError
from cdp_mappings.model import PlatformField
from cdp_profile.domain.events import ProfileEvent
from cdp_profile.domain.model import FieldState, Identifiers, ProfileHead, StoredFragment
from cdp_profile.domain.profile import ProfileWork


class ProfileRepository(Protocol):
    async def lock_profiles(
        self, customer_ids: Collection[str], now: datetime
    ) -> dict[str, ProfileHead]:
        """The profile rows of `customer_ids`, created when missing, locked until commit.

        Locks are taken in customer id order, so two transactions never deadlock on them.
        """
        ...

    async def survivors(self, customer_ids: Collection[str]) -> dict[str, str]:
        """For each merged customer among `customer_ids`, the customer it now lives in (the
        end of its merge chain)."""
        ...

    async def allocate_fragments(self, count: int) -> list[tuple[int, str]]:
        """`count` fresh (ingestion sequence number, fragment id) pairs, in increasing
        sequence order."""
        ...

    async def load_fields(
        self, paths_by_customer: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, FieldState]]:
        """The stored states among `paths_by_customer`, by customer id and path (a customer
        with none of them stored maps to an empty dict)."""
        ...

    async def add_fragments(self, fragments: Sequence[StoredFragment]) -> None: ...

    async def save(self, works: Sequence[ProfileWork], now: datetime) -> None:
        """Writes the changed field states and profile rows of `works`."""
        ...

    async def history(self, customer_id: str) -> list[StoredFragment]:
        """Every fragment the customer owns, in ingestion order."""
        ...

    async def profile(self, customer_id: str) -> tuple[ProfileHead, list[FieldState]] | None: ...

    async def move_fragments(self, from_customer: str, to_customer: str) -> int: ...

    async def family(self, customer_id: str) -> set[str]:
        """The customer and every customer merged into it, directly or through others."""
        ...

    async def owners_of_fragments_for(self, customer_ids: Collection[str]) -> set[str]:
        """The customers currently holding fragments ingested for `customer_ids`."""
        ...

    async def reclaim_fragments(self, customer_id: str, ingested_for: Collection[str]) -> int:
        """Gives `customer_id` back the fragments ingested for `ingested_for`."""
        ...

    async def record_merge(self, merge_id: str, survivor: str, merged: str, now: datetime) -> bool:
        """Notes the merge; False when its unmerge has already been applied (deliveries to
        two replicas can arrive in either order), so the merge must not be."""
        ...

    async def record_unmerge(
        self, merge_id: str, survivor: str, restored: str, now: datetime
    ) -> None: ...

    async def forget(self, customer_ids: Collection[str], now: datetime) -> int:
        """Deletes every fragment of or for `customer_ids`, their field states and anything
        about them still waiting in the outbox; keeps a bare marker row so that a late
        fragment cannot bring them back. Returns the fragments deleted."""
        ...


class ProfileUnitOfWork(Protocol):
    @property
    def profiles(self) -> ProfileRepository: ...

    async def __aenter__(self) -> ProfileUnitOfWork: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    def publish_event(self, event: ProfileEvent) -> None:
        """Queues `event` for the outbox. The handler goes on changing the document the
        event carries, so the unit of work serializes (or copies) it here, not at commit."""
        ...

    async def claim_message(self, consumer: str, message_id: str) -> bool:
        """True the first time `consumer` handles `message_id`, in this transaction."""
        ...


@dataclass(frozen=True)
class ResolveRequest:
    identifiers: Identifiers
    source: str


class IdentityPort(Protocol):
    async def resolve(self, requests: Sequence[ResolveRequest]) -> list[str | DomainError]:
        """One customer id per request, in order, or that request's error. InvalidArgument
        errors carry paths relative to the request (`identifiers.email`). Raises
        Unavailable when the identity service cannot be reached at all."""
        ...


@dataclass(frozen=True)
class PushOutcome:
    success: bool
    error: str = ""
    permanent: bool = False
    records_synced: int = 0
    records_failed: int = 0


@dataclass(frozen=True)
class PlatformRecord:
    customer_id: str
    email: str
    payload: dict[str, Any]
    fields: tuple[PlatformField, ...] = field(default=())


class ConnectorPort(Protocol):
    def knows(self, platform: str) -> bool:
        """Whether a connector address is configured for `platform`."""
        ...

    async def push(self, platform: str, record: PlatformRecord, *, timeout: float) -> PushOutcome:
        """Sends one record to the platform's connector within `timeout` seconds; raises
        TimeoutError past it and DomainError (Unavailable, ...) when the connector fails."""
        ...
