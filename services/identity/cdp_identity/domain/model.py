"""What identity resolution decides, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from cdp_identity.domain.identifiers import IdentifiersLike, IdentityKey
from cdp_identity.domain.matching import NO_ATTRIBUTES, PersonAttributes


class MatchMethod(StrEnum):
    DETERMINISTIC = "deterministic"
    PROBABILISTIC = "probabilistic"
    NEW = "new"


class IdentityStatus(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"
    # Came from a customer that was merged into this one.
    MERGED = "merged"


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"
    FORGOTTEN = "forgotten"


class ResolveIdentity(NamedTuple):
    """Command: find or create the customer these identifiers belong to (a tuple: batches
    build thousands)."""

    identifiers: IdentifiersLike
    attributes: PersonAttributes = NO_ATTRIBUTES
    source_platform: str = ""
    allow_probabilistic: bool = False


@dataclass(frozen=True)
class MergeOutcome:
    merge_ids: tuple[str, ...] = ()
    merged_customer_ids: tuple[str, ...] = ()
    refused: bool = False
    refusal_reason: str = ""


# Not frozen: a batch builds thousands, and frozen dataclasses initialise slowly.
@dataclass(slots=True)
class Resolution:
    customer_id: str
    method: MatchMethod
    confidence: float
    matched_on: tuple[str, ...]
    created: bool
    merge: MergeOutcome = MergeOutcome()


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


@dataclass(frozen=True)
class MergeRecord:
    merge_id: str
    survivor_customer_id: str
    merged_customer_id: str
    reason: str
    matched_on: tuple[str, ...]
    merged_at: datetime
    unmerged_at: datetime | None = None


@dataclass(frozen=True)
class Forgotten:
    customer_id: str
    identities_deleted: int
    forgotten_customer_ids: tuple[str, ...]
