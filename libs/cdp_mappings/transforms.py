"""The named transforms a mapping entry may apply, in order, to a value on its way out.

Each transform takes a JSON value and returns one, or raises TransformError saying what kind
of value it expected. Messages name types, never the value: profile values are personal data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cdp_mappings.model import FieldType


class TransformError(ValueError):
    """A value the transform cannot convert; the message names types, never the value."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _number_text(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number_text(value)
    raise TransformError(f"string expects a string, number or boolean, got {_kind(value)}")


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TransformError(f"{name} expects a string, got {_kind(value)}")
    return value


def to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise TransformError("number expects a number, got a boolean")
    if isinstance(value, (int, float)):
        number: int | float = value
    elif isinstance(value, str):
        try:
            number = float(value.strip().replace(",", ""))
        except ValueError:
            raise TransformError("number expects a number, got a non-numeric string") from None
    else:
        raise TransformError(f"number expects a number, got {_kind(value)}")
    if isinstance(number, float) and not math.isfinite(number):
        raise TransformError("number expects a finite number")
    if isinstance(number, float) and number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number


def to_integer(value: Any) -> int:
    number = to_number(value)
    if isinstance(number, float):
        raise TransformError("integer expects a whole number, got a fraction")
    return number


_TRUE = {"true", "yes", "1", "on", "y"}
_FALSE = {"false", "no", "0", "off", "n"}


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TransformError(f"boolean expects true/false, got {_kind(value)}")


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def to_date(value: Any) -> str:
    """An ISO 8601 date or date-time as `YYYY-MM-DD` (Mailchimp's API date format)."""
    text = _text("date", value).strip()
    if not _ISO_DATE.match(text):
        raise TransformError("date expects an ISO 8601 date (YYYY-MM-DD...)")
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        raise TransformError("date expects an ISO 8601 date (YYYY-MM-DD...)") from None


def _strings(name: str, value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    names: list[str] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            item = item["name"]
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise TransformError(f"{name} expects strings, got {_kind(item)} in the list")
        text = to_string(item).strip()
        if text and text not in names:
            names.append(text)
    return names


def to_mailchimp_tags(value: Any) -> list[dict[str, str]]:
    """`["vip", "beta"]` as Mailchimp's `[{"name": "vip", "status": "active"}, ...]`."""
    return [{"name": name, "status": "active"} for name in _strings("mailchimp_tags", value)]


def to_join(value: Any) -> str:
    return ", ".join(_strings("join", value))


def to_first(value: Any) -> Any:
    if isinstance(value, list):
        if not value:
            raise TransformError("first expects a non-empty list")
        return value[0]
    return value


@dataclass(frozen=True)
class Transform:
    name: str
    apply: Callable[[Any], Any]
    description: str
    # The platform field type a value of this transform fits, for creating missing fields.
    field_type: FieldType | None = None


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("string", to_string, "scalar as text (numbers without a trailing .0)"),
        Transform("trim", lambda v: _text("trim", v).strip(), "text without surrounding spaces"),
        Transform("lowercase", lambda v: _text("lowercase", v).lower(), "text in lower case"),
        Transform("uppercase", lambda v: _text("uppercase", v).upper(), "text in upper case"),
        Transform("number", to_number, "a number (numeric strings parsed)", FieldType.NUMBER),
        Transform("integer", to_integer, "a whole number", FieldType.NUMBER),
        Transform("boolean", to_boolean, "true/false (yes/no, 1/0 accepted)"),
        Transform("date", to_date, "an ISO date-time as YYYY-MM-DD", FieldType.DATE),
        Transform(
            "mailchimp_tags",
            to_mailchimp_tags,
            'a list of names as [{"name": ..., "status": "active"}], de-duplicated',
        ),
        Transform("join", to_join, "a list of names as one comma-separated string"),
        Transform("first", to_first, "the first element of a list"),
    )
}
