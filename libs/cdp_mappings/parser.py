"""Reading and validating a mapping file, reporting every problem with file, line and entry.

```yaml
mappings:
  - source: crm
    target: mailchimp
    fields:
      - from: user.firstName
        to: merge_fields.FNAME
      - from: user.tags
        to: tags
        transform: mailchimp_tags
```

A file with any problem is refused as a whole: a half-applied mapping would send wrong data
to a platform, which is worse than not starting.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from cdp_mappings.model import FieldMapping, FieldType, Mapping, MappingSet, PlatformField
from cdp_mappings.paths import PathError, parse_path
from cdp_mappings.targets import rules_for
from cdp_mappings.transforms import TRANSFORMS
from cdp_settings.config_files import (
    ConfigError,
    ConfigProblem,
    LineList,
    line_of,
    load_yaml,
    read_config_file,
)
from cdp_settings.platforms import KNOWN_PLATFORMS

# The platforms the suite knows by default (CDP_PLATFORMS); callers pass their own setting.
DEFAULT_PLATFORMS = KNOWN_PLATFORMS

_ENTRY_KEYS = ("from", "to", "transform", "type", "label")
_MAPPING_KEYS = ("source", "target", "fields")
_PLATFORM = re.compile(r"^[a-z][a-z0-9_\-]*$")


class _Collector:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[ConfigProblem] = []

    def add(self, line: int, entry: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.filename, line, entry, message))


def _transforms(raw: Any) -> tuple[list[str], str | None]:
    """The transform names of an entry, or why `transform:` is malformed."""
    if raw is None:
        return [], None
    names = raw if isinstance(raw, list) else [raw]
    if not names or not all(isinstance(name, str) for name in names):
        return [], "transform: must be a transform name or a list of names"
    return list(names), None


def _check_platform(
    value: Any, key: str, platforms: Collection[str] | None, out: _Collector, line: int, entry: str
) -> str | None:
    if not isinstance(value, str) or not value:
        out.add(line, entry, f"{key}: is required (a platform name)")
        return None
    if not _PLATFORM.match(value):
        out.add(line, entry, f"{key}: {value!r} is not a platform name (lower-case, a-z0-9_-)")
        return None
    if platforms is not None and value not in platforms:
        out.add(line, entry, f"{key}: unknown platform {value!r} (known: {', '.join(platforms)})")
        return None
    return value


def _parse_entry(
    raw: Any, *, target: str, out: _Collector, line: int, entry: str
) -> FieldMapping | None:
    if not isinstance(raw, dict):
        out.add(line, entry, "must be a mapping with from, to and optional transform")
        return None
    line = line_of(raw, default=line)
    label = f"{entry} ({raw.get('from')} -> {raw.get('to')})"
    ok = True
    for key in raw:
        if key not in _ENTRY_KEYS:
            out.add(
                line_of(raw, key, line),
                label,
                f"unknown key {key!r} (expected {', '.join(_ENTRY_KEYS)})",
            )
            ok = False
    paths: dict[str, tuple[str, ...]] = {}
    for key in ("from", "to"):
        if key not in raw:
            out.add(line, label, f"{key}: is required (a dot path such as user.firstName)")
            ok = False
            continue
        try:
            paths[key] = parse_path(raw[key])
        except PathError as error:
            out.add(line_of(raw, key, line), label, f"{key}: {error}")
            ok = False
    names, malformed = _transforms(raw.get("transform"))
    if malformed:
        out.add(line_of(raw, "transform", line), label, malformed)
        ok = False
    for name in names:
        if name not in TRANSFORMS:
            out.add(
                line_of(raw, "transform", line),
                label,
                f"transform: unknown transform {name!r} (known: {', '.join(TRANSFORMS)})",
            )
            ok = False
    field_type = FieldType.TEXT
    for name in names:
        inferred = TRANSFORMS[name].field_type if name in TRANSFORMS else None
        if inferred is not None:
            field_type = inferred
    if "type" in raw:
        try:
            field_type = FieldType(raw["type"])
        except ValueError:
            known = ", ".join(t.value for t in FieldType)
            out.add(
                line_of(raw, "type", line), label, f"type: unknown type {raw['type']!r} ({known})"
            )
            ok = False
    label_text = raw.get("label", "")
    if not isinstance(label_text, str) or len(label_text) > 100:
        out.add(line_of(raw, "label", line), label, "label: must be text of at most 100 characters")
        ok = False
    rules = rules_for(target)
    if "to" in paths:
        for problem in rules.check_path(paths["to"], tuple(names)):
            out.add(line_of(raw, "to", line), label, problem)
            ok = False
        if rules.field_tag(paths["to"]) is not None:
            for problem in rules.check_type(field_type):
                out.add(line_of(raw, "type", line), label, problem)
                ok = False
    if not ok:
        return None
    return FieldMapping(
        source_path=paths["from"],
        target_path=paths["to"],
        transforms=tuple(names),
        field_type=field_type,
        label=label_text if isinstance(label_text, str) else "",
        line=line,
    )


def _overlapping(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    shorter = min(len(a), len(b))
    return a != b and a[:shorter] == b[:shorter]


def _parse_mapping(
    raw: Any, index: int, platforms: Collection[str] | None, out: _Collector, line: int
) -> Mapping | None:
    entry = f"mapping {index + 1}"
    if not isinstance(raw, dict):
        out.add(line, entry, "must be a mapping with source, target and fields")
        return None
    line = line_of(raw, default=line)
    ok = True
    for key in raw:
        if key not in _MAPPING_KEYS:
            out.add(
                line_of(raw, key, line),
                entry,
                f"unknown key {key!r} (expected {', '.join(_MAPPING_KEYS)})",
            )
            ok = False
    source = _check_platform(
        raw.get("source"), "source", platforms, out, line_of(raw, "source", line), entry
    )
    target = _check_platform(
        raw.get("target"), "target", platforms, out, line_of(raw, "target", line), entry
    )
    if source is None or target is None:
        return None
    entry = f"mapping {source} -> {target}"
    if source == target:
        out.add(line, entry, "source and target are the same platform")
        return None
    fields = raw.get("fields")
    if not isinstance(fields, list) or not fields:
        out.add(line_of(raw, "fields", line), entry, "fields: must be a non-empty list of entries")
        return None
    item_lines = fields.item_lines if isinstance(fields, LineList) else []
    parsed: list[FieldMapping] = []
    for position, item in enumerate(fields):
        item_line = item_lines[position] if position < len(item_lines) else line
        field = _parse_entry(
            item, target=target, out=out, line=item_line, entry=f"{entry}, entry {position + 1}"
        )
        if field is None:
            ok = False
            continue
        for earlier in parsed:
            label = f"{entry}, entry {position + 1} ({field.source} -> {field.target})"
            if earlier.target_path == field.target_path:
                out.add(
                    field.line,
                    label,
                    f"to: {field.target!r} is already written by the entry on line {earlier.line}",
                )
                ok = False
            elif _overlapping(earlier.target_path, field.target_path):
                out.add(
                    field.line,
                    label,
                    f"to: {field.target!r} overlaps {earlier.target!r} (line {earlier.line}): "
                    "one would overwrite the other",
                )
                ok = False
        parsed.append(field)
    if not ok:
        return None
    return Mapping(source=source, target=target, fields=tuple(parsed), line=line)


def parse_mappings(
    text: str, filename: str, *, platforms: Collection[str] | None = DEFAULT_PLATFORMS
) -> MappingSet:
    """Parses a whole mapping file; raises ConfigError listing every problem found.

    Args:
        platforms: the platform names sources and targets must be among; None skips that check.
    """
    out = _Collector(filename)
    document = load_yaml(text, filename)
    if document is None:
        return MappingSet(file=filename)
    if not isinstance(document, dict) or set(document) - {"mappings"}:
        out.add(
            line_of(document, default=1), "", "the file must be a mapping with one key, `mappings`"
        )
        raise ConfigError(out.problems)
    raw_mappings = document.get("mappings") or []
    if not isinstance(raw_mappings, list):
        out.add(line_of(document, "mappings", 1), "", "mappings: must be a list")
        raise ConfigError(out.problems)
    item_lines = raw_mappings.item_lines if isinstance(raw_mappings, LineList) else []
    mappings: list[Mapping] = []
    for index, raw in enumerate(raw_mappings):
        line = item_lines[index] if index < len(item_lines) else 0
        mapping = _parse_mapping(raw, index, platforms, out, line)
        if mapping is None:
            continue
        duplicate = next(
            (m for m in mappings if (m.source, m.target) == (mapping.source, mapping.target)), None
        )
        if duplicate is not None:
            out.add(
                mapping.line,
                f"mapping {mapping.source} -> {mapping.target}",
                f"this pair is already mapped on line {duplicate.line}",
            )
            continue
        mappings.append(mapping)
    platform_fields = _platform_fields(mappings, out)
    if out.problems:
        raise ConfigError(out.problems)
    return MappingSet(tuple(mappings), filename, platform_fields)


def _label(mapping: Mapping, field: FieldMapping) -> str:
    return f"mapping {mapping.source} -> {mapping.target} ({field.source} -> {field.target})"


def _platform_fields(
    mappings: list[Mapping], out: _Collector
) -> dict[str, tuple[PlatformField, ...]]:
    """Per target, the fields to create there; one tag has one type across all mappings."""
    result: dict[str, dict[str, tuple[PlatformField, FieldMapping]]] = {}
    for mapping in mappings:
        rules = rules_for(mapping.target)
        for field in mapping.fields:
            tag = rules.field_tag(field.target_path)
            if tag is None:
                continue
            wanted = PlatformField(tag, field.label or tag, field.field_type)
            known = result.setdefault(mapping.target, {})
            if tag in known and known[tag][0].field_type != wanted.field_type:
                earlier = known[tag][1]
                out.add(
                    field.line,
                    _label(mapping, field),
                    f"type: {tag} is {wanted.field_type.value} here but "
                    f"{known[tag][0].field_type.value} on line {earlier.line}",
                )
                continue
            known.setdefault(tag, (wanted, field))
    # Paths written by two mappings into one target may be the same (the sync's source wins)
    # but must not nest inside each other, or one payload would clobber the other's object.
    by_target: dict[str, list[tuple[Mapping, FieldMapping]]] = {}
    for mapping in mappings:
        for field in mapping.fields:
            for other_mapping, other in by_target.get(mapping.target, []):
                if other_mapping.source != mapping.source and _overlapping(
                    other.target_path, field.target_path
                ):
                    out.add(
                        field.line,
                        _label(mapping, field),
                        f"to: {field.target!r} overlaps {other.target!r} written by "
                        f"{other_mapping.source} -> {other_mapping.target} (line {other.line})",
                    )
            by_target.setdefault(mapping.target, []).append((mapping, field))
    return {target: tuple(pair[0] for pair in fields.values()) for target, fields in result.items()}


def load_mappings(
    path: Path, *, platforms: Collection[str] | None = DEFAULT_PLATFORMS
) -> MappingSet:
    """Reads and validates the mapping file at `path` (see `parse_mappings`)."""
    return parse_mappings(read_config_file(path), str(path), platforms=platforms)
