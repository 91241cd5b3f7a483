"""What a criteria tree means, for one profile, in plain Python.

The service evaluates criteria in PostgreSQL (`adapters.sql_compiler`); this is the
definition the compiled SQL must agree with, written to be obviously right rather than fast.
Tests run both on the same profiles and compare.

Logic is two-valued: a condition on a field the profile does not have is false (except
`notEquals`, which is true, and `exists`), so `not (x greaterThan 5)` holds for a profile
without `x`, and `notEquals v` is exactly `not (equals v)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cdp_segmentation.domain.documents import NormalizedProfile
from cdp_segmentation.domain.model import Condition, FieldType, Group, Logic, Operator
from cdp_segmentation.domain.values import is_number, parse_instant


def _document_value(document: Mapping[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return None if isinstance(node, Mapping) else node


def _read(profile: NormalizedProfile, condition: Condition, declared: bool) -> Any:
    """The value a condition tests, as its type, or None. Declared fields come typed;
    undeclared ones are read from the document by their JSON type, as SQL reads them."""
    if declared:
        return profile.typed.get(condition.path)
    raw = _document_value(profile.document, condition.path)
    kind = condition.type
    if raw is None:
        return None
    if condition.operator is Operator.EXISTS:
        return raw
    if kind is FieldType.NUMBER:
        return float(raw) if is_number(raw) else None
    if kind is FieldType.BOOLEAN:
        return raw if isinstance(raw, bool) else None
    if kind is FieldType.STRING:
        return raw if isinstance(raw, str) else None
    if kind is FieldType.DATETIME:
        return parse_instant(raw) if isinstance(raw, str) else None
    if isinstance(raw, list):
        return [item for item in raw if isinstance(item, str)]
    return None


def condition_holds(value: Any, condition: Condition, now: datetime) -> bool:
    operator = condition.operator
    if operator is Operator.EXISTS:
        return value is not None
    if operator is Operator.NOT_EQUALS:
        return value is None or value != condition.value
    if value is None:
        return False
    expected: Any = condition.value
    if operator is Operator.EQUALS:
        return bool(value == expected)
    if operator in (Operator.GREATER_THAN, Operator.AFTER):
        return bool(value > expected)
    if operator in (Operator.LESS_THAN, Operator.BEFORE):
        return bool(value < expected)
    if operator is Operator.BETWEEN:
        low, high = expected
        return bool(low <= value <= high)
    if operator is Operator.IN:
        return value in expected
    if operator is Operator.CONTAINS:
        return expected in value
    if operator is Operator.WITHIN_LAST:
        return bool(value >= now - expected)
    raise AssertionError(f"operator {operator} has no meaning")


def matches(
    criteria: Condition | Group,
    profile: NormalizedProfile,
    now: datetime,
    *,
    declared: frozenset[str] | None = None,
) -> bool:
    """Whether `profile` is in a segment with `criteria` at `now`.

    `declared`: the paths read from typed columns (the read model's declared fields); by
    default each condition's own `declared` flag.
    """
    if isinstance(criteria, Condition):
        is_declared = criteria.declared if declared is None else criteria.path in declared
        return condition_holds(_read(profile, criteria, is_declared), criteria, now)
    results = (matches(child, profile, now, declared=declared) for child in criteria.children)
    if criteria.logic is Logic.AND:
        return all(results)
    if criteria.logic is Logic.OR:
        return any(results)
    return not next(results)
