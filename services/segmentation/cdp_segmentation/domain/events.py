"""What segmentation announces: a customer entered or left a real-time segment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Change(StrEnum):
    ENTERED = "entered"
    EXITED = "exited"


@dataclass(frozen=True)
class MembershipChanged:
    segment_id: str
    customer_id: str
    change: Change
    occurred_at: datetime
