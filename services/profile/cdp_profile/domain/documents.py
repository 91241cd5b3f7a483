"""Validating a fragment and splitting its attributes into the fields strategies resolve.

Objects are walked down to their values: `{"user": {"firstName": "Ada"}}` is the field
`user.firstName`. Lists are values (never walked), and so is an object at a field whose
strategy merges objects whole (`deep_merge`, e.g. `preferences`). JSON null means "this
source has no value" and is ignored. Whole numbers arrive from protobuf's Struct as floats
and are kept as integers, so 3 stays 3 on its way to a platform.

Field names follow the mapping files' path rules (letters, digits, `_`, `-`), so every
field can be mapped; violations name the field's position, never a value or a key that
might be personal data.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cdp_errors import FieldViolation
from cdp_profile.domain.model import EPOCH, JsonValue, Leaf
from cdp_profile.domain.strategies import StrategyBook

_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_MAX_SAFE_INTEGER = 2**53

# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


@dataclass(frozen=True)
class DocumentLimits:
    max_bytes: int
    max_depth: int
    max_fields: int


class _NotFinite(ValueError):
    """A NaN or an infinity: no JSON number stands for it."""


def _normalise(value: JsonValue) -> JsonValue:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _MAX_SAFE_INTEGER:
            return int(value)
        if not math.isfinite(value):
            raise _NotFinite
    return value


def _depth(value: JsonValue) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _clean(value: JsonValue) -> JsonValue:
    """Lists and nested objects inside a value, with whole numbers as integers."""
    if isinstance(value, dict):
        return {key: _clean(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_clean(child) for child in value]
    return _normalise(value)


# Keys already found to be field names: every fragment of a source repeats the same few,
# so the pattern runs once per key rather than once per field. Bounded, as keys come from
# outside.
_GOOD_KEYS: set[str] = set()
_GOOD_KEYS_LIMIT = 100_000


def _is_field_name(key: object) -> bool:
    if key in _GOOD_KEYS:
        return True
    if not isinstance(key, str) or not _KEY.match(key):
        return False
    if len(_GOOD_KEYS) < _GOOD_KEYS_LIMIT:
        _GOOD_KEYS.add(key)
    return True


_SCALARS = (str, int, bool)


class _Walk:
    def __init__(
        self, book: StrategyBook, limits: DocumentLimits, field: str, *, lenient: bool = False
    ) -> None:
        # Lenient walks (history replayed under today's configuration) drop what does not
        # fit instead of reporting it.
        self.lenient = lenient
        self.book = book
        self.limits = limits
        self.field = field
        self.leaves: list[Leaf] = []
        self.violations: list[FieldViolation] = []

    def _where(self, path: str) -> str:
        return f"{self.field}.{path}" if path else self.field

    def walk(self, node: dict[str, JsonValue], path: str, depth: int) -> None:
        max_depth = self.limits.max_depth
        if depth > max_depth:
            self.violations.append(
                FieldViolation(
                    self._where(path), f"is nested deeper than the limit of {max_depth} levels"
                )
            )
            return
        for_path = self.book.for_path
        leaves = self.leaves
        for key, value in node.items():
            if key not in _GOOD_KEYS and not _is_field_name(key):
                self.violations.append(
                    FieldViolation(
                        self._where(path),
                        "has a key that is not a field name (1 to 64 letters, digits, '_' "
                        "or '-')",
                    )
                )
                continue
            if value is None:
                continue
            child = f"{path}.{key}" if path else key
            strategy = for_path(child)
            kind = type(value)
            if kind in _SCALARS:
                # Strings, integers and booleans are leaves as they are: nothing to clean
                # and no depth.
                cleaned: JsonValue = value
            else:
                if isinstance(value, dict) and not strategy.keeps_objects_whole:
                    self.walk(value, child, depth + 1)
                    continue
                if depth + _depth(value) > max_depth:
                    self.violations.append(
                        FieldViolation(
                            self._where(child),
                            f"is nested deeper than the limit of {max_depth} levels",
                        )
                    )
                    continue
                try:
                    cleaned = _clean(value)
                except _NotFinite:
                    if not self.lenient:
                        self.violations.append(
                            FieldViolation(self._where(child), "is not a finite number")
                        )
                    continue
            if strategy.restricts_values:
                problem = strategy.accepts(cleaned)
                if problem is not None:
                    if not self.lenient:
                        self.violations.append(FieldViolation(self._where(child), problem))
                    continue
            leaves.append(Leaf(child, cleaned))


def split_attributes(
    attributes: dict[str, JsonValue],
    size: int,
    *,
    book: StrategyBook,
    limits: DocumentLimits,
    field: str = "attributes",
) -> tuple[tuple[Leaf, ...], list[FieldViolation]]:
    """The fields of `attributes`, or the violations that make it unacceptable."""
    if size > limits.max_bytes:
        return (), [
            FieldViolation(field, f"is {size:,} bytes; the limit is {limits.max_bytes:,} bytes")
        ]
    walk = _Walk(book, limits, field)
    walk.walk(attributes, "", 1)
    if walk.violations:
        return (), walk.violations
    if not walk.leaves:
        return (), [FieldViolation(field, "has no fields with a value")]
    if len(walk.leaves) > limits.max_fields:
        return (), [
            FieldViolation(
                field, f"has {len(walk.leaves):,} fields; the limit is {limits.max_fields:,}"
            )
        ]
    return tuple(walk.leaves), []


def parse_observed_at(
    raw: tuple[int, int] | None, *, now: datetime, max_skew: timedelta, field: str = "observed_at"
) -> tuple[datetime | None, FieldViolation | None]:
    """The observed time (microsecond precision), or why it is unacceptable."""
    if raw is None:
        return None, FieldViolation(field, "is required: when the source observed the values")
    seconds, nanos = raw
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS) or not (0 <= nanos < 1_000_000_000):
        return None, FieldViolation(
            field, "is not a valid timestamp (seconds or nanos out of range)"
        )
    moment = EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    if moment > now + max_skew:
        return None, FieldViolation(
            field,
            f"is {(moment - now).total_seconds():,.0f} s in the future; at most "
            f"{max_skew.total_seconds():,.0f} s of clock skew is accepted",
        )
    return moment, None


_NO_LIMITS = DocumentLimits(max_bytes=2**62, max_depth=1_000, max_fields=2**62)


def split_history(attributes: dict[str, JsonValue], book: StrategyBook) -> tuple[Leaf, ...]:
    """The fields of a stored fragment under `book`, leaving out any that no longer fit."""
    walk = _Walk(book, _NO_LIMITS, "attributes", lenient=True)
    walk.walk(attributes, "", 1)
    return tuple(walk.leaves)


def flatten_document(document: dict[str, JsonValue], book: StrategyBook) -> dict[str, JsonValue]:
    """A unified document's fields by path (objects merged whole stay one field)."""
    return {leaf.path: leaf.value for leaf in split_history(document, book)}
