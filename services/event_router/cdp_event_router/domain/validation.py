"""What makes a unified event acceptable, checked before anything is written.

Every problem is reported with the field it concerns (`events[3].timestamp`), never with a
personal value. An optional tracking plan adds a JSON Schema per event type for the
properties (Segment Protocols' model): unplanned types can be allowed or refused.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator

from cdp_errors import FieldViolation
from cdp_event_router.domain.model import IncomingEvent

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,3}$")
MAX_ID_LENGTH = 128
MAX_TYPE_LENGTH = 100


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int = 32 * 1024
    max_depth: int = 10
    max_future: timedelta = timedelta(hours=24)
    max_age: timedelta = timedelta(days=3650)


@dataclass(frozen=True)
class TrackingPlan:
    """JSON Schemas for the properties of planned event types."""

    schemas: Mapping[str, Any] = field(default_factory=dict)
    allow_unplanned: bool = True

    def validators(self) -> dict[str, Draft202012Validator]:
        return {name: Draft202012Validator(schema) for name, schema in self.schemas.items()}


def _depth(value: Any, limit: int, current: int = 0) -> int:
    if current > limit:
        return current
    if isinstance(value, dict):
        return max((_depth(v, limit, current + 1) for v in value.values()), default=current + 1)
    if isinstance(value, list):
        return max((_depth(v, limit, current + 1) for v in value), default=current + 1)
    return current


def _schema_path(error: Any) -> str:
    parts = ["properties"]
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).replace(".[", "[")


class EventValidator:
    def __init__(
        self,
        *,
        known_sources: frozenset[str],
        limits: Limits | None = None,
        plan: TrackingPlan | None = None,
    ) -> None:
        limits = limits or Limits()
        plan = plan or TrackingPlan()
        self._sources = known_sources
        self._limits = limits
        self._plan = plan
        self._schemas = plan.validators()

    def validate(self, event: IncomingEvent, now: datetime) -> list[FieldViolation]:
        problems: list[FieldViolation] = []
        if not event.id:
            problems.append(FieldViolation("id", "is required"))
        elif len(event.id) > MAX_ID_LENGTH or not event.id.isprintable():
            problems.append(FieldViolation(
                "id", f"must be at most {MAX_ID_LENGTH} printable characters"))
        if not event.type:
            problems.append(FieldViolation("type", "is required"))
        elif len(event.type) > MAX_TYPE_LENGTH or not TYPE_PATTERN.match(event.type):
            problems.append(FieldViolation(
                "type", f"{event.type[:60]!r} is not of the form object.action "
                "(lower case letters, digits and _, 2 to 4 dot-separated parts)"))
        if not event.source:
            problems.append(FieldViolation("source", "is required"))
        elif event.source not in self._sources:
            problems.append(FieldViolation(
                "source", f"unknown source {event.source[:40]!r}; known: "
                + ", ".join(sorted(self._sources))))
        if event.timestamp is None:
            problems.append(FieldViolation("timestamp", "is required"))
        elif event.timestamp > now + self._limits.max_future:
            problems.append(FieldViolation(
                "timestamp", f"is more than {self._limits.max_future} in the future"))
        elif event.timestamp < now - self._limits.max_age:
            problems.append(FieldViolation(
                "timestamp", f"is more than {self._limits.max_age.days} days in the past"))
        if event.customer_id:
            try:
                uuid.UUID(event.customer_id)
            except ValueError:
                problems.append(FieldViolation("customer_id", "is not a customer id (a UUID)"))
        elif not event.identifiers.any():
            problems.append(FieldViolation(
                "identifiers", "customer_id or at least one identifier is required"))
        if event.size > self._limits.max_event_bytes:
            problems.append(FieldViolation(
                "properties", f"event of {event.size} bytes exceeds the limit of "
                f"{self._limits.max_event_bytes} bytes"))
        elif _depth(event.properties, self._limits.max_depth) > self._limits.max_depth:
            problems.append(FieldViolation(
                "properties", f"is nested deeper than {self._limits.max_depth} levels"))
        problems.extend(self._check_plan(event))
        return problems

    def _check_plan(self, event: IncomingEvent) -> list[FieldViolation]:
        if not event.type:
            return []
        validator = self._schemas.get(event.type)
        if validator is None:
            if self._plan.allow_unplanned or not self._schemas:
                return []
            return [FieldViolation("type", f"{event.type!r} is not in the tracking plan")]
        return [
            FieldViolation(_schema_path(error), _describe(error))
            for error in sorted(validator.iter_errors(event.properties), key=_schema_path)
        ]


def _describe(error: Any) -> str:
    """The broken rule in the plan's own terms; jsonschema's message quotes the value."""
    rule, expected = error.validator, error.validator_value
    if rule == "type":
        return f"must be of type {expected}"
    if rule == "required":
        missing = [name for name in expected if name not in (error.instance or {})]
        return "is missing required " + ", ".join(missing)
    if rule == "enum":
        return "is not one of the values the tracking plan allows"
    if rule == "additionalProperties":
        return "has properties the tracking plan does not list"
    return f"violates the tracking plan's {rule} rule ({str(expected)[:80]})"
