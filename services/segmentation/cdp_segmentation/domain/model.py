"""Segments, their criteria trees and the attribute schema the criteria are checked against.

Plain data: no gRPC, SQL or NATS. A criteria tree arrives as `RawGroup` / `RawCondition`
(strings and JSON values, as a caller wrote them); `criteria.check_criteria` turns it into a
`Group` / `Condition` tree whose every value has the type its field has, or rejects it with
the path of each bad part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

# A field path: dot-separated names of letters, digits, '_' and '-' (the profile service's
# own rule for attribute keys), at most 8 levels.
FIELD_PATH = re.compile(r"^[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,7}$")


class FieldType(StrEnum):
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    # An instant; ISO 8601 strings in documents, UTC when they carry no offset.
    DATETIME = "datetime"
    # A list of strings (tags, interests).
    LIST = "list"


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "notEquals"
    GREATER_THAN = "greaterThan"
    LESS_THAN = "lessThan"
    BETWEEN = "between"
    CONTAINS = "contains"
    IN = "in"
    EXISTS = "exists"
    WITHIN_LAST = "withinLast"
    BEFORE = "before"
    AFTER = "after"


OPERATORS_BY_TYPE: Mapping[FieldType, tuple[Operator, ...]] = {
    FieldType.NUMBER: (
        Operator.EQUALS,
        Operator.NOT_EQUALS,
        Operator.GREATER_THAN,
        Operator.LESS_THAN,
        Operator.BETWEEN,
        Operator.IN,
        Operator.EXISTS,
    ),
    FieldType.DATETIME: (
        Operator.EQUALS,
        Operator.NOT_EQUALS,
        Operator.GREATER_THAN,
        Operator.LESS_THAN,
        Operator.BETWEEN,
        Operator.BEFORE,
        Operator.AFTER,
        Operator.WITHIN_LAST,
        Operator.EXISTS,
    ),
    FieldType.STRING: (
        Operator.EQUALS,
        Operator.NOT_EQUALS,
        Operator.CONTAINS,
        Operator.IN,
        Operator.EXISTS,
    ),
    FieldType.BOOLEAN: (Operator.EQUALS, Operator.NOT_EQUALS, Operator.EXISTS),
    FieldType.LIST: (Operator.CONTAINS, Operator.EXISTS),
}


class TimeUnit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"

    def span(self, count: int) -> timedelta:
        return timedelta(**{self.value: count})


class Logic(StrEnum):
    AND = "and"
    OR = "or"
    # Exactly one child.
    NOT = "not"


class ScheduleKind(StrEnum):
    REALTIME = "realtime"
    HOURLY = "hourly"
    DAILY = "daily"
    CRON = "cron"


# ---- the schema ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """A field of the profile that criteria may test, with its type and known sources.

    `declared` fields come from the attribute schema file: they are typed, indexed columns of
    the read model. Learned fields were seen in profiles but not declared: criteria on them
    read the stored document (no index).
    """

    path: str
    type: FieldType
    sources: tuple[str, ...] = ()
    declared: bool = True
    description: str = ""
    indexed: bool = True


@dataclass(frozen=True)
class LearnedField:
    """What the profiles have shown of an undeclared field: every type and source seen."""

    path: str
    types: frozenset[FieldType]
    sources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AttributeSchema:
    """The fields criteria can name: declared ones first, then learned ones."""

    declared: Mapping[str, FieldSpec] = field(default_factory=dict)
    learned: Mapping[str, LearnedField] = field(default_factory=dict)

    def known_paths(self) -> list[str]:
        return sorted({*self.declared, *self.learned})


# ---- criteria as a caller wrote them --------------------------------------------------------


@dataclass(frozen=True)
class RawCondition:
    field: str
    operator: str
    # A JSON value (None, bool, float, str, list, dict); `has_value` tells unset from null.
    value: Any = None
    has_value: bool = False
    unit: str = ""
    source: str = ""


@dataclass(frozen=True)
class RawGroup:
    # "and", "or", "not", or "" when the caller set none.
    operator: str
    # None stands for a criterion holding neither a condition nor a group.
    children: tuple[RawCondition | RawGroup | None, ...] = ()


# ---- checked criteria ---------------------------------------------------------------------

# A checked value: float, str, bool or datetime (UTC); a tuple of them for `in`; a
# (low, high) pair for `between`; a timedelta for `withinLast`; None for `exists`.
Value = float | str | bool | datetime | timedelta | tuple[Any, ...] | None


@dataclass(frozen=True)
class Condition:
    path: str
    type: FieldType
    # Declared fields are read from their typed column, learned ones from the document.
    declared: bool
    operator: Operator
    value: Value
    # withinLast only: the count and unit as given (kept to show the definition back).
    count: int = 0
    unit: TimeUnit | None = None
    source: str = ""


@dataclass(frozen=True)
class Group:
    logic: Logic
    children: tuple[Condition | Group, ...]


def conditions_of(node: Condition | Group) -> list[Condition]:
    """Every condition of a tree, depth first."""
    if isinstance(node, Condition):
        return [node]
    found: list[Condition] = []
    for child in node.children:
        found.extend(conditions_of(child))
    return found


def relative_conditions(criteria: Group) -> list[Condition]:
    """The conditions whose truth changes as time passes (withinLast)."""
    return [c for c in conditions_of(criteria) if c.operator is Operator.WITHIN_LAST]


# ---- segments -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    kind: ScheduleKind
    # A five-field cron expression (UTC), for CRON only.
    cron: str = ""


@dataclass(frozen=True)
class SegmentDefinition:
    """What a caller defines: everything of a segment except what the service sets."""

    name: str
    description: str
    criteria: Group
    platforms: tuple[str, ...]
    schedule: Schedule


@dataclass(frozen=True)
class Segment:
    id: str
    definition: SegmentDefinition
    created_at: datetime
    updated_at: datetime
    revision: int = 1

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def realtime(self) -> bool:
        return self.definition.schedule.kind is ScheduleKind.REALTIME


@dataclass(frozen=True)
class PlatformSyncStatus:
    platform: str
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str
    consecutive_failures: int
    pending_additions: int
    pending_removals: int
    members_on_platform: int
    next_sync_at: datetime | None


@dataclass(frozen=True)
class SegmentView:
    """A segment as GetSegment shows it: definition, stored member count, sync state."""

    segment: Segment
    member_count: int
    sync_status: tuple[PlatformSyncStatus, ...] = ()


@dataclass(frozen=True)
class Member:
    customer_id: str
    entered_at: datetime
