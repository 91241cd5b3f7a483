"""Reading the attribute schema file (`attributes.yaml` beside this module by default).

A file with any problem is not used: the service does not start, and every problem is
named with file, line and entry.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from cdp_segmentation.domain.model import FIELD_PATH, FieldSpec, FieldType
from cdp_settings.config_files import (
    ConfigError,
    ConfigProblem,
    LineDict,
    line_of,
    load_yaml,
    read_config_file,
)

HERE = Path(__file__).parent
DEFAULT_ATTRIBUTES_FILE = HERE / "attributes.yaml"

_KEYS = ("path", "type", "sources", "description", "index")
_TYPES = ", ".join(t.value for t in FieldType)


def parse_attribute_schema(
    text: str, filename: str, *, platforms: Collection[str]
) -> dict[str, FieldSpec]:
    """Declared fields by path; ConfigError listing every problem otherwise."""
    document = load_yaml(text, filename)
    problems: list[ConfigProblem] = []

    def problem(line: int, entry: str, message: str) -> None:
        problems.append(ConfigProblem(filename, line, entry, message))

    if not isinstance(document, dict) or not isinstance(document.get("fields"), list):
        raise ConfigError(
            [ConfigProblem(filename, line_of(document), "", "needs a `fields:` list")]
        )
    for key in document:
        if key != "fields":
            problem(line_of(document, key), "", f"unknown key {key!r} (only `fields`)")
    fields: dict[str, FieldSpec] = {}
    for index, entry in enumerate(document["fields"], start=1):
        name = f"field {index}"
        line = line_of(entry, default=line_of(document, "fields"))
        if not isinstance(entry, LineDict):
            problem(line, name, "needs path and type")
            continue
        for key in entry:
            if key not in _KEYS:
                problem(line_of(entry, key), name, f"unknown key {key!r} ({', '.join(_KEYS)})")
        path = entry.get("path")
        if not isinstance(path, str) or not FIELD_PATH.match(path):
            problem(
                line_of(entry, "path"),
                name,
                "path: needs a dot path of names (letters, digits, '_', '-'), at most 8 levels",
            )
            continue
        name = f"field {index} ({path})"
        try:
            field_type = FieldType(str(entry.get("type")))
        except ValueError:
            problem(line_of(entry, "type"), name, f"type: needs one of {_TYPES}")
            continue
        sources: Any = entry.get("sources", [])
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            problem(line_of(entry, "sources"), name, "sources: needs a list of platform names")
            continue
        unknown = [s for s in sources if s not in platforms]
        if unknown:
            problem(
                line_of(entry, "sources"),
                name,
                f"sources: unknown platform(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(platforms))})",
            )
            continue
        indexed = entry.get("index", True)
        if not isinstance(indexed, bool):
            problem(line_of(entry, "index"), name, "index: needs true or false")
            continue
        description = entry.get("description", "")
        if not isinstance(description, str):
            problem(line_of(entry, "description"), name, "description: needs text")
            continue
        if path in fields:
            problem(line_of(entry, "path"), name, "path: declared twice")
            continue
        for other in fields:
            if path.startswith(f"{other}.") or other.startswith(f"{path}."):
                problem(
                    line_of(entry, "path"),
                    name,
                    f"path: nests with {other} (a field is a value or an object, not both)",
                )
                break
        else:
            fields[path] = FieldSpec(
                path=path,
                type=field_type,
                sources=tuple(sources),
                declared=True,
                description=description,
                indexed=indexed,
            )
    if problems:
        raise ConfigError(problems)
    return fields


def load_attribute_schema(
    path: Path | None, *, platforms: Collection[str]
) -> dict[str, FieldSpec]:
    chosen = path or DEFAULT_ATTRIBUTES_FILE
    return parse_attribute_schema(read_config_file(chosen), str(chosen), platforms=platforms)
