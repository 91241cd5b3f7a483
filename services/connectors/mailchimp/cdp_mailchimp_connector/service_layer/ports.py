"""What the handlers need from storage and peers, as protocols the adapters and fakes meet."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cdp_mailchimp_connector.domain.inbound import Fragment, UnifiedEvent
from cdp_mailchimp_connector.domain.model import FailedOperation, NewFailure


class FailureStore(Protocol):
    async def record(self, failures: Sequence[NewFailure], now: datetime) -> None:
        """Stores each failure, or counts one more attempt of one already stored
        (same operation and subject)."""
        ...

    async def page(
        self, *, limit: int, include_permanent: bool
    ) -> tuple[list[FailedOperation], int]: ...

    async def select(self, ids: Sequence[str]) -> list[FailedOperation]:
        """The operations with these ids, or every non-permanent one when `ids` is empty."""
        ...

    async def resolve(self, operation_id: str) -> None: ...


class SegmentMap(Protocol):
    async def platform_segment(self, segment_id: str) -> str | None: ...

    async def remember(self, segment_id: str, platform_segment_id: str) -> None: ...


@dataclass(frozen=True)
class InboundItem:
    id: str
    kind: str  # "event" or "fragment"
    body: dict[str, Any]
    attempts: int


class InboundStore(Protocol):
    async def add(self, items: Sequence[tuple[str, str, dict[str, Any]]], now: datetime) -> int:
        """Stores (id, kind, body) items not seen before; returns how many were new."""
        ...

    async def due(self, now: datetime, limit: int) -> list[InboundItem]: ...

    async def delivered(self, ids: Sequence[str], now: datetime) -> None: ...

    async def postpone(self, ids: Sequence[str], until: datetime) -> None: ...

    async def pending(self) -> int: ...

    async def cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, value: str) -> None: ...


class EventRouter(Protocol):
    async def publish(self, events: Sequence[UnifiedEvent]) -> list[bool]:
        """Per event: True when the router took it or refused it for good (do not resend);
        raises when the router cannot be reached."""
        ...


class ProfileSink(Protocol):
    async def ingest(self, fragments: Sequence[Fragment]) -> list[bool]: ...


class ProcessedEvents(Protocol):
    """Routed events already applied, by event id (the cdp_bus Inbox)."""

    async def seen(self, event_id: str) -> bool: ...

    async def remember(self, event_id: str) -> None: ...


class CustomerDirectory(Protocol):
    async def primary_email(self, customer_id: str) -> str:
        """The customer's primary email, "" when the suite knows none; raises Unavailable
        when the identity service cannot be reached."""
        ...
