"""An event the router sent to the `email` role, as the connector needs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RoutedEvent:
    event_id: str
    type: str
    # The resolved customer; the event's own email may be missing (a track by user id).
    customer_id: str
    email: str
    properties: dict[str, Any]
    occurred_at: datetime | None
