"""What a mapping file declares, once parsed and validated."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class FieldType(StrEnum):
    """Platform field types (the Connector contract's FieldType, without its prefix)."""

    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    PHONE = "phone"
    ADDRESS = "address"


@dataclass(frozen=True)
class FieldMapping:
    """One entry: the value at `source_path` of the unified profile, transformed, written to
    `target_path` of the platform's record."""

    source_path: tuple[str, ...]
    target_path: tuple[str, ...]
    transforms: tuple[str, ...] = ()
    # For targets whose fields must exist first (Mailchimp merge fields): their type and label.
    field_type: FieldType = FieldType.TEXT
    label: str = ""
    line: int = 0

    @property
    def source(self) -> str:
        return ".".join(self.source_path)

    @property
    def target(self) -> str:
        return ".".join(self.target_path)


@dataclass(frozen=True)
class PlatformField:
    """A field that must exist on the target platform before records can carry it."""

    tag: str
    label: str
    field_type: FieldType


@dataclass(frozen=True)
class Mapping:
    """Every entry for one (source, target) platform pair."""

    source: str
    target: str
    fields: tuple[FieldMapping, ...]
    line: int = 0


@dataclass(frozen=True)
class MappingSet:
    """A whole mapping file."""

    mappings: tuple[Mapping, ...] = ()
    file: str = ""
    # Per target: the fields its records need to exist (Mailchimp merge fields).
    platform_fields: dict[str, tuple[PlatformField, ...]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Mapping]:
        return iter(self.mappings)

    def targets(self) -> tuple[str, ...]:
        """Every platform some mapping writes to, in file order."""
        return tuple(dict.fromkeys(m.target for m in self.mappings))

    def into(self, target: str, *, preferred_source: str = "") -> tuple[FieldMapping, ...]:
        """The entries of every mapping into `target`.

        The entries of `preferred_source`'s mapping come last, so where two mappings write
        the same target path, the platform that triggered the sync has the final word.
        """
        chosen = [m for m in self.mappings if m.target == target]
        chosen.sort(key=lambda m: m.source == preferred_source)
        return tuple(entry for m in chosen for entry in m.fields)
