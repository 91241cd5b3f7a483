"""Domain events identity announces on the bus (past tense)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class CustomerCreated:
    customer_id: str
    identity_types: tuple[str, ...]
    source_platform: str
    occurred_at: datetime
