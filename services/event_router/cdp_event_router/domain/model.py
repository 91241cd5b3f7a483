"""The unified event as the router handles it, and what publishing one decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from cdp_errors import FieldViolation


@dataclass(slots=True)
class EventIdentifiers:
    user_id: str = ""
    email: str = ""
    phone: str = ""
    anonymous_id: str = ""
    session_id: str = ""
    device_id: str = ""
    platform_ids: tuple[tuple[str, str], ...] = ()
    cookies: tuple[str, ...] = ()

    def any(self) -> bool:
        return bool(self.user_id or self.email or self.phone or self.anonymous_id
                    or self.device_id or self.platform_ids or self.cookies)


@dataclass(slots=True)
class IncomingEvent:
    """One event as received, before the router has decided anything about it.

    `wire` is the message the event arrived as, opaque to the router's logic: the codec that
    writes the stored and broadcast form re-encodes from it when present, instead of
    rebuilding the message from these fields.
    """

    id: str
    type: str
    source: str
    timestamp: datetime | None
    customer_id: str = ""
    identifiers: EventIdentifiers = field(default_factory=EventIdentifiers)
    properties: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    wire: Any = None
    # Encoded size of the event as received, for the size limit.
    size: int = 0


class Lane(IntEnum):
    """Real-time events are published at once; batched ones by size or age."""

    REALTIME = 0
    BATCHED = 1


class PublishStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"


@dataclass(slots=True)
class PublishOutcome:
    event_id: str
    status: PublishStatus
    customer_id: str = ""
    targets: tuple[str, ...] = ()
    violations: tuple[FieldViolation, ...] = ()
    # Set when the event could not be processed at all (identity down, ...): retry it.
    error_code: str = ""
    error_message: str = ""


@dataclass(frozen=True)
class StoredEvent:
    id: str
    type: str
    source: str
    customer_id: str
    occurred_at: datetime
    received_at: datetime
    targets: tuple[str, ...]
    payload: bytes


@dataclass(frozen=True)
class EventFilter:
    customer_id: str = ""
    types: tuple[str, ...] = ()
    source: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class FailedEvent:
    event_id: str
    type: str
    source: str
    raw_json: str
    violations: tuple[FieldViolation, ...]
    received_at: datetime
