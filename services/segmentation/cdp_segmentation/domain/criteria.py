"""Checking a criteria tree against the attribute schema.

Every problem is reported, each with the path of the bad part as the request spells the
tree (`criteria.conditions[1].operator`, `criteria.conditions[0].conditions[2].value`):
unknown fields, unknown operators, operators that do not apply to the field's type
(`greaterThan` on a string field), values of the wrong type or shape, units, sources.
Values are never echoed in messages (a condition may test an email); field names and
operators are, since they follow a strict pattern and help the caller find the mistake.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdp_errors import FieldViolation, InvalidArgument
from cdp_segmentation.domain.model import (
    FIELD_PATH,
    OPERATORS_BY_TYPE,
    AttributeSchema,
    Condition,
    FieldType,
    Group,
    Logic,
    Operator,
    RawCondition,
    RawGroup,
    TimeUnit,
    Value,
)
from cdp_segmentation.domain.values import is_number, parse_instant


@dataclass(frozen=True)
class CriteriaLimits:
    max_depth: int = 8
    max_conditions: int = 200
    max_list_items: int = 1000
    max_text_length: int = 1000
    # The longest withinLast window, in days (about 100 years).
    max_window_days: int = 36_600


DEFAULT_LIMITS = CriteriaLimits()
_OPERATORS = {op.value: op for op in Operator}
_LOGIC = {logic.value: logic for logic in Logic}


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class _Checker:
    def __init__(
        self, schema: AttributeSchema, platforms: Collection[str], limits: CriteriaLimits
    ) -> None:
        self.schema = schema
        self.platforms = frozenset(platforms)
        self.limits = limits
        self.violations: list[FieldViolation] = []
        self.conditions = 0

    def problem(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    # ---- groups ---------------------------------------------------------------------------

    def group(self, raw: RawGroup, path: str, depth: int) -> Group | None:
        if depth > self.limits.max_depth:
            self.problem(path, f"is nested deeper than the limit of {self.limits.max_depth} levels")
            return None
        logic = _LOGIC.get(raw.operator.lower()) if raw.operator else None
        if not raw.operator:
            self.problem(f"{path}.operator", "is required (and, or, not)")
        elif logic is None:
            self.problem(f"{path}.operator", f"unknown logical operator {raw.operator!r}")
        if not raw.children:
            self.problem(f"{path}.conditions", "needs at least one condition or group")
        elif logic is Logic.NOT and len(raw.children) != 1:
            self.problem(
                f"{path}.conditions",
                f"not takes exactly one condition or group, got {len(raw.children)}",
            )
        children: list[Condition | Group] = []
        for index, child in enumerate(raw.children):
            child_path = f"{path}.conditions[{index}]"
            checked: Condition | Group | None
            if child is None:
                self.problem(child_path, "needs a condition or a group")
                checked = None
            elif isinstance(child, RawGroup):
                checked = self.group(child, child_path, depth + 1)
            else:
                checked = self.condition(child, child_path)
            if checked is not None:
                children.append(checked)
        if logic is None or len(children) != len(raw.children) or not children:
            return None
        return Group(logic, tuple(children))

    # ---- conditions -----------------------------------------------------------------------

    def field_type(self, raw: RawCondition, path: str, operator: Operator | None) -> Any:
        """(type, declared, sources) of the field, or None after reporting why not."""
        if not raw.field:
            self.problem(f"{path}.field", "is required")
            return None
        if not FIELD_PATH.match(raw.field):
            self.problem(
                f"{path}.field",
                "is not a field path (dot-separated names of letters, digits, '_' and '-')",
            )
            return None
        spec = self.schema.declared.get(raw.field)
        if spec is not None:
            return spec.type, True, spec.sources
        learned = self.schema.learned.get(raw.field)
        if learned is None:
            self.problem(
                f"{path}.field",
                f"unknown field {raw.field!r}: neither declared in the attribute schema nor "
                f"seen in any profile{_suggest(raw.field, self.schema.known_paths())}",
            )
            return None
        if len(learned.types) > 1 and operator is not Operator.EXISTS:
            kinds = ", ".join(sorted(t.value for t in learned.types))
            self.problem(
                f"{path}.field",
                f"{raw.field} has values of several types in the profiles ({kinds}); declare "
                "its type in the attribute schema to test it (exists works as it is)",
            )
            return None
        return sorted(learned.types)[0], False, ()

    def condition(self, raw: RawCondition, path: str) -> Condition | None:
        self.conditions += 1
        if self.conditions == self.limits.max_conditions + 1:
            self.problem(path, f"is past the limit of {self.limits.max_conditions} conditions")
        operator = _OPERATORS.get(raw.operator)
        if not raw.operator:
            self.problem(f"{path}.operator", "is required")
        elif operator is None:
            self.problem(
                f"{path}.operator",
                f"unknown operator {raw.operator!r} (known: {', '.join(_OPERATORS)})"
                + _suggest(raw.operator, _OPERATORS),
            )
        found = self.field_type(raw, path, operator)
        source_ok = self.source(raw, path, found)
        if operator is None or found is None:
            return None
        field_type, declared, _ = found
        allowed = OPERATORS_BY_TYPE[field_type]
        if operator not in allowed:
            self.problem(
                f"{path}.operator",
                f"{operator.value} does not apply to {raw.field}, a {field_type.value} field "
                f"({field_type.value} fields take {', '.join(op.value for op in allowed)})",
            )
            return None
        unit = self.unit(raw, path, operator)
        value = self.value(raw, f"{path}.value", operator, field_type)
        if value is _INVALID or (operator is Operator.WITHIN_LAST and unit is None):
            return None
        if not source_ok:
            return None
        count = 0
        if operator is Operator.WITHIN_LAST:
            assert unit is not None and isinstance(value, int)
            count = value
            value = unit.span(count)
        return Condition(
            path=raw.field,
            type=field_type,
            declared=declared,
            operator=operator,
            value=value,
            count=count,
            unit=unit,
            source=raw.source,
        )

    def source(self, raw: RawCondition, path: str, found: Any) -> bool:
        if not raw.source:
            return True
        if raw.source not in self.platforms:
            self.problem(
                f"{path}.source",
                f"unknown platform {raw.source!r}{_suggest(raw.source, self.platforms)}",
            )
            return False
        if found is not None:
            _, _, sources = found
            if sources and raw.source not in sources:
                self.problem(
                    f"{path}.source",
                    f"{raw.field} does not come from {raw.source} (it comes from "
                    f"{', '.join(sources)})",
                )
                return False
        return True

    def unit(self, raw: RawCondition, path: str, operator: Operator) -> TimeUnit | None:
        if operator is not Operator.WITHIN_LAST:
            if raw.unit:
                self.problem(f"{path}.unit", "is only used by withinLast")
            return None
        if not raw.unit:
            self.problem(f"{path}.unit", "is required for withinLast (minutes, hours, days)")
            return None
        try:
            return TimeUnit(raw.unit)
        except ValueError:
            self.problem(f"{path}.unit", f"unknown unit {raw.unit!r} (minutes, hours, days)")
            return None

    # ---- values ---------------------------------------------------------------------------

    def value(self, raw: RawCondition, path: str, operator: Operator, kind: FieldType) -> Any:
        present = raw.has_value and raw.value is not None
        if operator is Operator.EXISTS:
            if present:
                self.problem(path, "must be unset for exists (use not to test absence)")
                return _INVALID
            return None
        if not present:
            self.problem(path, f"is required for {operator.value}")
            return _INVALID
        if operator is Operator.WITHIN_LAST:
            return self.window(raw, path)
        if operator is Operator.BETWEEN:
            return self.between(raw.value, path, kind)
        if operator is Operator.IN:
            return self.members(raw.value, path, kind)
        return self.scalar(raw.value, path, kind, operator)

    def window(self, raw: RawCondition, path: str) -> Any:
        value = raw.value
        if not is_number(value) or not float(value).is_integer() or value < 1:
            self.problem(path, "needs a positive whole number (how many of the unit)")
            return _INVALID
        count = int(value)
        try:
            unit = TimeUnit(raw.unit)
        except ValueError:
            # The unit is reported on its own; the length cannot be judged without it.
            return count
        try:
            days = unit.span(count).days
        except OverflowError:
            days = self.limits.max_window_days + 1
        if days > self.limits.max_window_days:
            self.problem(path, f"is a window longer than {self.limits.max_window_days} days")
            return _INVALID
        return count

    def between(self, value: Any, path: str, kind: FieldType) -> Any:
        if kind not in (FieldType.NUMBER, FieldType.DATETIME):
            self.problem(path, "between applies to number and datetime fields")
            return _INVALID
        if not isinstance(value, list) or len(value) != 2:
            self.problem(path, "needs a list of two values, [low, high]")
            return _INVALID
        low = self.scalar(value[0], f"{path}[0]", kind, Operator.BETWEEN)
        high = self.scalar(value[1], f"{path}[1]", kind, Operator.BETWEEN)
        if low is _INVALID or high is _INVALID:
            return _INVALID
        if low > high:
            self.problem(path, "has its low bound above its high bound")
            return _INVALID
        return (low, high)

    def members(self, value: Any, path: str, kind: FieldType) -> Any:
        if not isinstance(value, list) or not value:
            self.problem(path, "needs a non-empty list of values")
            return _INVALID
        if len(value) > self.limits.max_list_items:
            self.problem(
                path, f"has {len(value)} values; the limit is {self.limits.max_list_items}"
            )
            return _INVALID
        items = [
            self.scalar(item, f"{path}[{index}]", kind, Operator.IN)
            for index, item in enumerate(value)
        ]
        if any(item is _INVALID for item in items):
            return _INVALID
        return tuple(dict.fromkeys(items))

    def scalar(self, value: Any, path: str, kind: FieldType, operator: Operator) -> Any:
        if kind is FieldType.NUMBER:
            if not is_number(value):
                self.problem(path, f"needs a number ({operator.value} on a number field)")
                return _INVALID
            return float(value)
        if kind is FieldType.DATETIME:
            moment = parse_instant(value) if isinstance(value, str) else None
            if moment is None:
                self.problem(
                    path, "needs an ISO 8601 date or date-time, e.g. 2026-11-04 or "
                    "2026-11-04T10:00:00Z"
                )
                return _INVALID
            return moment
        if kind is FieldType.BOOLEAN:
            if not isinstance(value, bool):
                self.problem(path, "needs true or false")
                return _INVALID
            return value
        # Strings, and the element a list field must contain.
        if not isinstance(value, str):
            self.problem(path, "needs text")
            return _INVALID
        if operator is Operator.CONTAINS and not value:
            self.problem(path, "needs non-empty text")
            return _INVALID
        if len(value) > self.limits.max_text_length:
            self.problem(path, f"is longer than {self.limits.max_text_length} characters")
            return _INVALID
        return value


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


_INVALID: Any = _Invalid()


def check_criteria(
    raw: RawGroup | None,
    schema: AttributeSchema,
    *,
    platforms: Collection[str],
    limits: CriteriaLimits = DEFAULT_LIMITS,
    path: str = "criteria",
) -> Group:
    """The checked tree; InvalidArgument naming every bad part otherwise."""
    if raw is None:
        raise InvalidArgument.single(path, "is required")
    checker = _Checker(schema, platforms, limits)
    group = checker.group(raw, path, 1)
    if checker.violations or group is None:
        raise InvalidArgument(checker.violations or [FieldViolation(path, "is not valid")])
    return group


# ---- the stored form ----------------------------------------------------------------------


def _value_document(condition: Condition) -> Any:
    value: Value = condition.value
    if condition.operator is Operator.WITHIN_LAST:
        return condition.count
    if isinstance(value, tuple):
        return [_scalar_document(v) for v in value]
    return _scalar_document(value)


def _scalar_document(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def to_document(node: Condition | Group) -> dict[str, Any]:
    """The tree as JSON (stored with the segment, and shown back to callers)."""
    if isinstance(node, Group):
        return {"operator": node.logic.value, "conditions": [to_document(c) for c in node.children]}
    document: dict[str, Any] = {
        "field": node.path,
        "type": node.type.value,
        "declared": node.declared,
        "operator": node.operator.value,
    }
    if node.operator is not Operator.EXISTS:
        document["value"] = _value_document(node)
    if node.unit is not None:
        document["unit"] = node.unit.value
    if node.source:
        document["source"] = node.source
    return document


def from_document(document: dict[str, Any]) -> Condition | Group:
    """A tree stored by `to_document` (trusted: it was checked when stored)."""
    if "conditions" in document:
        children = tuple(from_document(c) for c in document["conditions"])
        return Group(Logic(document["operator"]), children)
    kind = FieldType(document["type"])
    operator = Operator(document["operator"])
    raw = document.get("value")
    unit = TimeUnit(document["unit"]) if document.get("unit") else None
    count = 0
    value: Value
    if operator is Operator.EXISTS:
        value = None
    elif operator is Operator.WITHIN_LAST:
        assert unit is not None and isinstance(raw, (int, float))
        count = int(raw)
        value = unit.span(count)
    elif isinstance(raw, list):
        items = [_scalar_from_document(v, kind) for v in raw]
        value = tuple(items)
    else:
        value = _scalar_from_document(raw, kind)
    return Condition(
        path=document["field"],
        type=kind,
        declared=bool(document.get("declared", True)),
        operator=operator,
        value=value,
        count=count,
        unit=unit,
        source=document.get("source", ""),
    )


def _scalar_from_document(raw: Any, kind: FieldType) -> Any:
    if kind is FieldType.DATETIME:
        moment = parse_instant(raw)
        assert moment is not None
        return moment
    if kind is FieldType.NUMBER:
        return float(raw)
    return raw


def criteria_from_document(document: dict[str, Any]) -> Group:
    node = from_document(document)
    assert isinstance(node, Group)
    return node
