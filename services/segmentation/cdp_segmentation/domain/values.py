"""Reading values the way the whole service reads them: numbers, instants, booleans, lists.

One set of rules for condition values and for profile documents, so that `greaterThan 500`
and a stored `"500"` mean the same thing in a criterion, in the read model and in the
reference evaluator.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from cdp_segmentation.domain.model import FieldType

# ISO 8601 dates and date-times (a space is accepted for the `T`); the offset is optional
# and UTC is assumed without one.
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"([Zz]|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_NUMBER_TEXT = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")

# How instants are written in stored documents: fixed width, UTC, so that text order is
# time order (the read model compares learned date fields as text).
CANONICAL_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse_instant(text: str) -> datetime | None:
    """An aware UTC datetime for an ISO 8601 date or date-time, else None."""
    match = _ISO.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    normal = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}.{micro:06d}"
    if offset and offset not in ("Z", "z"):
        sign, digits = offset[0], offset[1:].replace(":", "")
        normal += f"{sign}{digits[:2]}:{(digits[2:] or '00')}"
    else:
        normal += "+00:00"
    try:
        moment = datetime.fromisoformat(normal)
    except ValueError:
        return None
    if moment.year < 1 or moment.year > 9999:
        return None
    return moment.astimezone(UTC)


def canonical_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(CANONICAL_FORMAT)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_number(value: Any) -> float | None:
    """A finite number, or numeric text such as "500.00"; None otherwise (booleans too)."""
    if is_number(value):
        return float(value)
    if isinstance(value, str) and _NUMBER_TEXT.match(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def as_boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def number_text(value: float) -> str:
    """500.0 -> "500", 12.5 -> "12.5"."""
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def as_string(value: Any) -> str | None:
    """Text; numbers and booleans become their text (a postcode sent as 12345 is "12345")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return number_text(float(value))
    return None


def as_string_list(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [item for item in (as_string(v) for v in value) if item is not None]


def coerce(value: Any, field_type: FieldType) -> Any:
    """`value` read as `field_type`, or None when it cannot be."""
    if field_type is FieldType.NUMBER:
        return as_number(value)
    if field_type is FieldType.DATETIME:
        return parse_instant(value) if isinstance(value, str) else None
    if field_type is FieldType.BOOLEAN:
        return as_boolean(value)
    if field_type is FieldType.STRING:
        return as_string(value)
    return as_string_list(value)


def observed_type(value: Any) -> FieldType | None:
    """The type a document value shows by itself (a learned field's type)."""
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if is_number(value):
        return FieldType.NUMBER
    if isinstance(value, str):
        return FieldType.DATETIME if parse_instant(value) is not None else FieldType.STRING
    if isinstance(value, list):
        return FieldType.LIST
    return None
