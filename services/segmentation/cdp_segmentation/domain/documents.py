"""Turning a unified profile document into what the read model stores.

The profile service sends the whole document with every change. Segmentation keeps, per
customer: the value of every declared field read as its declared type (a typed, indexed
column each), the email the platforms are keyed by, and the document itself, normalised so
that undeclared fields can be compared in SQL without a cast that could fail:

- JSON nulls and non-finite numbers are dropped (they mean "no value");
- strings that are ISO 8601 dates or date-times are rewritten in one fixed-width UTC form
  (`2026-11-04T10:00:00.000000Z`), so their text order is their time order;
- declared fields hold their value as the declared type, or are dropped when it cannot be
  read as that type (a `lifetime_value` of "n/a").

Every leaf of an undeclared field also reports the type it shows, which is how fields are
learned (see `AttributeSchema.learned`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdp_segmentation.domain.model import FieldType
from cdp_segmentation.domain.values import (
    canonical_instant,
    coerce,
    is_number,
    observed_type,
    parse_instant,
)

MAX_DEPTH = 16


@dataclass(frozen=True)
class NormalizedProfile:
    # The normalised document (what conditions on undeclared fields read).
    document: dict[str, Any]
    # Declared path -> value as its type, for every declared field (None when absent).
    typed: dict[str, Any]
    email: str | None
    # Undeclared leaf path -> the type its value shows.
    observed: dict[str, FieldType]


def _stored(value: Any, field_type: FieldType) -> Any:
    """A typed value as JSON for the document."""
    if field_type is FieldType.DATETIME:
        assert isinstance(value, datetime)
        return canonical_instant(value)
    return value


def _plain(value: Any) -> Any:
    """An undeclared value as stored: instants canonical, nulls and NaN gone (None)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if is_number(value) else None
    if isinstance(value, str):
        moment = parse_instant(value)
        return canonical_instant(moment) if moment is not None else value
    if isinstance(value, list):
        return [item for item in (_plain(v) for v in value) if item is not None]
    return None


def normalize_profile(
    document: Mapping[str, Any],
    declared: Mapping[str, FieldType],
    *,
    email_path: str,
) -> NormalizedProfile:
    typed: dict[str, Any] = dict.fromkeys(declared)
    observed: dict[str, FieldType] = {}

    def walk(node: Mapping[str, Any], prefix: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                continue
            path = f"{prefix}{key}"
            if isinstance(value, Mapping):
                if depth < MAX_DEPTH and path not in declared:
                    inner = walk(value, f"{path}.", depth + 1)
                    if inner:
                        out[key] = inner
                continue
            field_type = declared.get(path)
            if field_type is not None:
                read = coerce(value, field_type)
                if read is not None:
                    typed[path] = read
                    out[key] = _stored(read, field_type)
                continue
            plain = _plain(value)
            if plain is None:
                continue
            out[key] = plain
            kind = observed_type(plain)
            if kind is not None:
                observed[path] = kind
        return out

    normalized = walk(document, "", 0)
    email = _lookup(document, email_path)
    return NormalizedProfile(
        document=normalized,
        typed=typed,
        email=email.strip() if isinstance(email, str) and email.strip() else None,
        observed=observed,
    )


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
