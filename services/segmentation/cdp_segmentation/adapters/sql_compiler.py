"""Criteria trees compiled to one parameterised PostgreSQL predicate.

Nothing a caller wrote reaches the SQL text. Values are always parameters (`$n` with an
explicit type). A declared field is its typed column, whose name is `f<id>` from the field
catalog (checked against that pattern, then quoted): the field's path is only ever a key to
look the column up. An undeclared field is read from the stored document with the path as a
`text[]` parameter. So the text of a compiled predicate depends only on the tree's shape,
operators and the catalog, which also lets PostgreSQL reuse its prepared statements.

Semantics are those of `domain.evaluation` (two-valued: a condition on a missing field is
false, `notEquals` true). In positive position a condition compiles to a plain comparison,
which an index on the column can serve and whose NULL for a missing value the surrounding
AND / OR / WHERE treat as false; under NOT, De Morgan pushes the negation down to the
conditions, each then wrapped `IS NOT TRUE` so that a missing value counts as "not".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cdp_segmentation.domain.model import (
    Condition,
    FieldType,
    Group,
    Logic,
    Operator,
    conditions_of,
)
from cdp_segmentation.domain.values import canonical_instant

SCHEMA = "segmentation"
COLUMN_NAME = re.compile(r"^f[0-9]{1,9}$")


@dataclass(frozen=True)
class DeclaredColumn:
    """A declared field's typed column in `segmentation.profiles`."""

    path: str
    type: FieldType
    column: str

    def __post_init__(self) -> None:
        if not COLUMN_NAME.match(self.column):
            raise ValueError(f"column name {self.column!r} is not of the form f<id>")


_SQL_TYPE = {
    FieldType.NUMBER: "float8",
    FieldType.DATETIME: "timestamptz",
    FieldType.STRING: "text",
    FieldType.BOOLEAN: "boolean",
    FieldType.LIST: "text",
}
_DOCUMENT_READER = {
    FieldType.NUMBER: "as_number",
    FieldType.DATETIME: "as_time",
    FieldType.STRING: "as_text",
    FieldType.BOOLEAN: "as_bool",
}

ParamSource = Callable[[datetime], Any]


def _constant(value: Any) -> ParamSource:
    def source(_now: datetime) -> Any:
        return value

    return source


@dataclass
class Params:
    """Parameters of one statement, numbered from `first`; a value may depend on `now`."""

    first: int = 1
    sources: list[ParamSource] = field(default_factory=list)

    def add(self, value: Any, cast: str) -> str:
        self.sources.append(_constant(value))
        return f"${self.first + len(self.sources) - 1}::{cast}"

    def add_relative(self, source: ParamSource, cast: str) -> str:
        self.sources.append(source)
        return f"${self.first + len(self.sources) - 1}::{cast}"

    def bind(self, now: datetime) -> list[Any]:
        return [source(now) for source in self.sources]

    @property
    def next_number(self) -> int:
        return self.first + len(self.sources)


@dataclass(frozen=True)
class Compiled:
    sql: str
    # Whether the predicate reads the document table (aliased `d`).
    uses_document: bool


class _Compiler:
    def __init__(
        self,
        columns: Mapping[str, DeclaredColumn],
        params: Params,
        profile_alias: str,
        document_alias: str,
    ) -> None:
        self.columns = columns
        self.params = params
        self.p = profile_alias
        self.d = document_alias
        self.uses_document = False

    def node(self, node: Condition | Group, negated: bool) -> str:
        if isinstance(node, Condition):
            positive = self.condition(node)
            return f"(({positive}) IS NOT TRUE)" if negated else f"({positive})"
        if node.logic is Logic.NOT:
            return self.node(node.children[0], not negated)
        conjunction = (node.logic is Logic.AND) != negated
        joiner = " AND " if conjunction else " OR "
        return "(" + joiner.join(self.node(child, negated) for child in node.children) + ")"

    # ---- reading a field ------------------------------------------------------------------

    def column(self, condition: Condition) -> DeclaredColumn | None:
        declared = self.columns.get(condition.path)
        return declared if declared is not None and declared.type is condition.type else None

    def expression(self, condition: Condition) -> str:
        """The field as a typed SQL expression (NULL when the profile has no such value)."""
        declared = self.column(condition)
        if declared is not None:
            return f'{self.p}."{declared.column}"'
        self.uses_document = True
        path = self.params.add(condition.path.split("."), "text[]")
        if condition.type is FieldType.LIST:
            return f"({self.d}.attributes #> {path})"
        reader = _DOCUMENT_READER[condition.type]
        read = f"{SCHEMA}.{reader}({self.d}.attributes #> {path})"
        # Learned instants are canonical UTC text: compared byte by byte, in time order.
        return f'({read} COLLATE "C")' if condition.type is FieldType.DATETIME else read

    def value(self, condition: Condition, value: Any) -> str:
        kind = condition.type
        if kind is FieldType.DATETIME and self.column(condition) is None:
            return self.params.add(canonical_instant(value), "text")
        return self.params.add(value, _SQL_TYPE[kind])

    def values(self, condition: Condition, values: Sequence[Any]) -> str:
        kind = condition.type
        if kind is FieldType.DATETIME and self.column(condition) is None:
            return self.params.add([canonical_instant(v) for v in values], "text[]")
        return self.params.add(list(values), f"{_SQL_TYPE[kind]}[]")

    # ---- one condition, in positive position -------------------------------------------------

    def document_value(self, condition: Condition) -> str:
        """The raw document value of an undeclared field, whatever its type."""
        self.uses_document = True
        path = self.params.add(condition.path.split("."), "text[]")
        return f"({self.d}.attributes #> {path})"

    def condition(self, condition: Condition) -> str:
        operator = condition.operator
        if operator is Operator.EXISTS:
            if self.column(condition) is None:
                # A present value of any shape but an object (objects hold other fields).
                return (
                    f"jsonb_typeof({self.document_value(condition)}) "
                    "IN ('number', 'string', 'boolean', 'array')"
                )
            return f"{self.expression(condition)} IS NOT NULL"
        target = self.expression(condition)
        if condition.type is FieldType.LIST:
            element = self.params.add(condition.value, "text")
            if self.column(condition) is not None:
                return f"{target} @> ARRAY[{element}]"
            return f"{target} @> jsonb_build_array({element})"
        if operator is Operator.WITHIN_LAST:
            window = condition.value
            assert isinstance(window, timedelta)
            if self.column(condition) is not None:
                bound = self.params.add_relative(lambda now: now - window, "timestamptz")
            else:
                bound = self.params.add_relative(
                    lambda now: canonical_instant(now - window), "text"
                )
            return f"{target} >= {bound}"
        if operator is Operator.BETWEEN:
            assert isinstance(condition.value, tuple)
            low, high = condition.value
            low_param = self.value(condition, low)
            return f"{target} BETWEEN {low_param} AND {self.value(condition, high)}"
        if operator is Operator.IN:
            assert isinstance(condition.value, tuple)
            return f"{target} = ANY({self.values(condition, condition.value)})"
        if operator is Operator.CONTAINS:
            return f"strpos({target}, {self.value(condition, condition.value)}) > 0"
        if operator is Operator.NOT_EQUALS:
            return f"{target} IS DISTINCT FROM {self.value(condition, condition.value)}"
        comparison = _COMPARISONS.get(operator)
        if comparison is None:
            raise AssertionError(f"no SQL for operator {operator}")
        return f"{target} {comparison} {self.value(condition, condition.value)}"


_COMPARISONS = {
    Operator.EQUALS: "=",
    Operator.GREATER_THAN: ">",
    Operator.AFTER: ">",
    Operator.LESS_THAN: "<",
    Operator.BEFORE: "<",
}


def compile_predicate(
    criteria: Group,
    columns: Mapping[str, DeclaredColumn],
    params: Params,
    *,
    profile_alias: str = "p",
    document_alias: str = "d",
) -> Compiled:
    """The predicate for `criteria`, its parameters appended to `params`."""
    compiler = _Compiler(columns, params, profile_alias, document_alias)
    sql = compiler.node(criteria, negated=False)
    return Compiled(sql=sql, uses_document=compiler.uses_document)


def profiles_from(
    uses_document: bool, *, profile_alias: str = "p", document_alias: str = "d"
) -> str:
    """The FROM clause a compiled predicate runs over (active profiles only)."""
    source = f"{SCHEMA}.profiles {profile_alias}"
    if uses_document:
        source += (
            f" JOIN {SCHEMA}.profile_documents {document_alias}"
            f" ON {document_alias}.customer_id = {profile_alias}.customer_id"
        )
    return source


@dataclass(frozen=True)
class SegmentQuery:
    """A segment-wide query with its parameters for one instant."""

    sql: str
    params: list[Any]


def count_query(
    criteria: Group, columns: Mapping[str, DeclaredColumn], now: datetime
) -> SegmentQuery:
    params = Params()
    compiled = compile_predicate(criteria, columns, params)
    sql = (
        f"SELECT count(*) FROM {profiles_from(compiled.uses_document)} "
        f"WHERE p.status = 0 AND {compiled.sql}"
    )
    return SegmentQuery(sql, params.bind(now))


def sample_query(
    criteria: Group, columns: Mapping[str, DeclaredColumn], now: datetime, limit: int
) -> SegmentQuery:
    params = Params()
    compiled = compile_predicate(criteria, columns, params)
    limit_param = params.add(limit, "int")
    sql = (
        f"SELECT p.customer_id FROM {profiles_from(compiled.uses_document)} "
        f"WHERE p.status = 0 AND {compiled.sql} LIMIT {limit_param}"
    )
    return SegmentQuery(sql, params.bind(now))


def window_candidates(
    criteria: Group,
    columns: Mapping[str, DeclaredColumn],
    params: Params,
    *,
    since: datetime,
    until: datetime,
    profile_alias: str = "p",
    document_alias: str = "d",
) -> Compiled:
    """Profiles whose withinLast conditions can have flipped between `since` and `until`.

    `value >= now - N` changes from true to false exactly when `now - N` passes the value,
    so only values in [since - N, until - N) can change their answer: a range scan on the
    field's index instead of the whole segment.
    """
    compiler = _Compiler(columns, params, profile_alias, document_alias)
    parts = []
    for condition in conditions_of(criteria):
        if condition.operator is not Operator.WITHIN_LAST:
            continue
        window = condition.value
        assert isinstance(window, timedelta)
        target = compiler.expression(condition)
        if compiler.column(condition) is not None:
            low = params.add(since - window, "timestamptz")
            high = params.add(until - window, "timestamptz")
        else:
            low = params.add(canonical_instant(since - window), "text")
            high = params.add(canonical_instant(until - window), "text")
        parts.append(f"({target} >= {low} AND {target} < {high})")
    if not parts:
        return Compiled("false", False)
    return Compiled("(" + " OR ".join(parts) + ")", compiler.uses_document)
