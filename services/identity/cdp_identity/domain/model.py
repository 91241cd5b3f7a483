"""What identity resolution decides, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from cdp_identity.domain.identifiers import IdentityKey, RawIdentifiers


class MatchMethod(StrEnum):
    DETERMINISTIC = "deterministic"
    PROBABILISTIC = "probabilistic"
    NEW = "new"


class IdentityStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"
    MERGED = "merged"


@dataclass(frozen=True)
class ResolveIdentity:
    """Command: find or create the customer these identifiers belong to."""

    identifiers: RawIdentifiers
    source_platform: str = ""
    allow_probabilistic: bool = False


@dataclass(frozen=True)
class Resolution:
    customer_id: str
    method: MatchMethod
    confidence: float
    matched_on: tuple[str, ...]
    created: bool


@dataclass(frozen=True)
class StoredIdentity:
    key: IdentityKey
    customer_id: str
    status: IdentityStatus
    confidence: float
    source_platform: str
    first_seen_at: datetime
    last_verified_at: datetime


@dataclass(frozen=True)
class IdentityMap:
    customer_id: str
    identities: tuple[StoredIdentity, ...]
    created_at: datetime
    updated_at: datetime
    merged_customer_ids: tuple[str, ...] = field(default=())
