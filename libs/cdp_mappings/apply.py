"""Turning a unified profile document into one platform's record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdp_mappings.model import FieldMapping
from cdp_mappings.paths import get_path, set_path
from cdp_mappings.transforms import TRANSFORMS, TransformError


@dataclass(frozen=True)
class SkippedField:
    """An entry whose value could not be transformed; the reason names types, not values."""

    source: str
    target: str
    reason: str


@dataclass
class MappedRecord:
    payload: dict[str, Any] = field(default_factory=dict)
    # The unified profile paths that supplied a value.
    used: list[str] = field(default_factory=list)
    skipped: list[SkippedField] = field(default_factory=list)


def apply_fields(entries: Sequence[FieldMapping], document: Mapping[str, Any]) -> MappedRecord:
    """The record `entries` build from `document`; later entries win on the same target path.

    A path the profile does not have (or holds null) is left out of the record, so a platform
    keeps what it has for fields the suite knows nothing about.
    """
    record = MappedRecord()
    for entry in entries:
        value = get_path(document, entry.source_path)
        if value is None:
            continue
        try:
            for name in entry.transforms:
                value = TRANSFORMS[name].apply(value)
        except TransformError as error:
            record.skipped.append(SkippedField(entry.source, entry.target, str(error)))
            continue
        set_path(record.payload, entry.target_path, value)
        record.used.append(entry.source)
    return record
