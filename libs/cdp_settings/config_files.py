"""Configuration files (YAML) that remember where each entry came from, for errors naming
file and line.

Configuration files are read with PyYAML's safe loader; every mapping becomes a `LineDict`
(a dict that knows its own line and each key's line) and every sequence a `LineList`, so a
validator can say `mappings.yaml:14: mapping crm -> mailchimp, entry 2: ...` instead of
"invalid mapping".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, SequenceNode


class LineDict(dict[Any, Any]):
    """A YAML mapping with the 1-based line it starts on and the line of each key."""

    line: int
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A YAML sequence with the 1-based line it starts on and the line of each item."""

    line: int
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> LineDict:
        # Duplicate keys silently keep the last value in PyYAML; in a config file that hides a
        # mistake, so they are an error here.
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key]})",
                    key_node.start_mark,
                )
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        built = LineDict(super().construct_mapping(node, deep=True))
        built.line = node.start_mark.line + 1
        built.key_lines = seen
        return built

    def construct_sequence(self, node: SequenceNode, deep: bool = False) -> LineList:
        built = LineList(super().construct_sequence(node, deep=True))
        built.line = node.start_mark.line + 1
        built.item_lines = [item.start_mark.line + 1 for item in node.value]
        return built


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _LineLoader.construct_mapping,
)
_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
    _LineLoader.construct_sequence,
)


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file, located as precisely as known."""

    file: str
    line: int
    # Which entry, in the file's own terms: "mapping crm -> mailchimp, entry 3".
    entry: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.entry}: {self.message}" if self.entry else f"{where}: {self.message}"
        )


class ConfigError(Exception):
    """Every problem found in a configuration file; a file with any problem is not used."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def read_config_file(path: Path) -> str:
    """The text of the configuration file at `path`; a ConfigError naming the file when it
    cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            [ConfigProblem(str(path), 0, "", f"cannot read the file: {error.strerror or error}")]
        ) from None


def load_yaml(text: str, filename: str) -> Any:
    """Parses `text`; a syntax error becomes a ConfigError naming `filename` and the line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 0
        reason = error.problem or error.context or "not valid YAML"
        raise ConfigError([ConfigProblem(filename, line, "", f"YAML: {reason}")]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigProblem(filename, 0, "", f"YAML: {error}")]) from None


def line_of(node: Any, key: Any = None, default: int = 0) -> int:
    """The line of `key` in a LineDict (or of the node itself), else `default`."""
    if isinstance(node, LineDict):
        if key is not None and key in node.key_lines:
            return node.key_lines[key]
        return node.line
    if isinstance(node, LineList):
        return node.line
    return default
