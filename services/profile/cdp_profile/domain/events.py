"""Domain events the profile service announces (past tense)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cdp_profile.domain.model import FieldChange, JsonValue


@dataclass(frozen=True)
class ProfileUpdated:
    customer_id: str
    version: int
    changes: tuple[FieldChange, ...]
    # The whole unified document after the change.
    attributes: dict[str, JsonValue]
    occurred_at: datetime


@dataclass(frozen=True)
class ProfileDeleted:
    customer_id: str
    # Set when the profile was folded into another customer's.
    merged_into: str
    occurred_at: datetime


ProfileEvent = ProfileUpdated | ProfileDeleted
