"""Triggers: declarative projections of events onto profile attributes.

A trigger names event types and the attributes to set from them, each an aggregate over the
customer's stored events of those types: `count`, `max` / `min` / `sum` of a field, or the
`latest` value of a field (the field is `timestamp` or a `properties.` path). Aggregates are
recomputed from the event store rather than accumulated, so a redelivered or replayed event
sets the same value again instead of counting twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

AGGREGATES = ("count", "max", "min", "sum", "latest")


@dataclass(frozen=True)
class Projection:
    # Dot path in the profile, e.g. "ecommerce.order_count".
    attribute: str
    aggregate: str
    # "timestamp", or a path into the properties: ("total",), ("cart", "value"), or () for
    # the whole properties object (with `latest`).
    field: tuple[str, ...]
    from_timestamp: bool = False


@dataclass(frozen=True)
class Trigger:
    name: str
    event_types: tuple[str, ...]
    projections: tuple[Projection, ...]


@dataclass(frozen=True)
class TriggerSet:
    triggers: Sequence[Trigger]

    def for_type(self, event_type: str) -> list[Trigger]:
        return [t for t in self.triggers if event_type in t.event_types]

    @property
    def event_types(self) -> list[str]:
        return sorted({t for trigger in self.triggers for t in trigger.event_types})
