"""Routing rules: which targets an event goes to, and in which lane.

Targets are roles (`email`, `crm`, `analytics`, ...), each played by one platform
(`email: mailchimp`). An event never goes back to the platform it came from: a Mailchimp
`email.opened` is not routed to the `email` role while Mailchimp plays it. The most specific
rule wins: an exact type, then the longest `prefix.*` pattern, then `*`. A rule may carry
conditions on the event's properties; when they do not hold, the next rule applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdp_event_router.domain.model import IncomingEvent, Lane

OPERATORS = ("equals", "notEquals", "greaterThan", "lessThan", "exists", "in")


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    operator: str
    value: Any = None

    def holds(self, properties: Mapping[str, Any]) -> bool:
        current: Any = properties
        for part in self.path:
            if not isinstance(current, Mapping) or part not in current:
                return self.operator == "exists" and self.value is False
            current = current[part]
        if self.operator == "exists":
            return self.value is not False
        if self.operator == "equals":
            return bool(current == self.value)
        if self.operator == "notEquals":
            return bool(current != self.value)
        if self.operator == "in":
            return current in self.value
        if not isinstance(current, (int, float)) or isinstance(current, bool):
            return False
        if self.operator == "greaterThan":
            return bool(current > self.value)
        return bool(current < self.value)


@dataclass(frozen=True)
class Route:
    pattern: str
    targets: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()

    def specificity(self) -> tuple[int, int]:
        if self.pattern == "*":
            return (0, 0)
        if self.pattern.endswith(".*"):
            return (1, len(self.pattern))
        return (2, len(self.pattern))

    def matches(self, event_type: str) -> bool:
        if self.pattern == "*":
            return True
        if self.pattern.endswith(".*"):
            return event_type.startswith(self.pattern[:-1])
        return event_type == self.pattern


def _matches_pattern(pattern: str, event_type: str) -> bool:
    return Route(pattern, ()).matches(event_type)


@dataclass(frozen=True)
class RoutingTable:
    # Role -> the platform that plays it.
    roles: Mapping[str, str]
    routes: Sequence[Route]
    realtime: Sequence[str]

    def __post_init__(self) -> None:
        ordered = sorted(self.routes, key=lambda r: r.specificity(), reverse=True)
        object.__setattr__(self, "routes", tuple(ordered))

    def targets_for(self, event: IncomingEvent) -> tuple[str, ...]:
        for route in self.routes:
            if route.matches(event.type) and all(
                c.holds(event.properties) for c in route.conditions
            ):
                return tuple(
                    role for role in route.targets
                    if self.roles.get(role, role) != event.source and role != event.source
                )
        return ()

    def lane(self, event_type: str) -> Lane:
        if any(_matches_pattern(p, event_type) for p in self.realtime):
            return Lane.REALTIME
        return Lane.BATCHED

    def platform_of(self, role: str) -> str:
        return self.roles.get(role, role)
