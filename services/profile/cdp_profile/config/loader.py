"""Reading the declarative configuration: strategies per field and field mappings.

Both files ship with the service (`strategies.yaml`, `mappings.yaml` beside this module) and
can be replaced by settings (`CDP_PROFILE_STRATEGIES_FILE`, `CDP_PROFILE_MAPPINGS_FILE`). A
file with any problem stops the service at start, with every problem named by file, line
and entry.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdp_mappings import ConfigError, ConfigProblem, MappingSet, load_mappings, load_yaml
from cdp_profile.domain.strategies import Strategy, StrategyBook, StrategyName, StrategyRule
from cdp_settings.config_files import LineList, line_of, read_config_file

HERE = Path(__file__).parent
DEFAULT_STRATEGIES_FILE = HERE / "strategies.yaml"
DEFAULT_MAPPINGS_FILE = HERE / "mappings.yaml"

_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")
_RULE_KEYS = ("path", "strategy", "sources")


@dataclass(frozen=True)
class ProfileConfig:
    strategies: StrategyBook
    mappings: MappingSet


def _pattern(raw: Any) -> tuple[tuple[str, ...] | None, str]:
    if not isinstance(raw, str) or not raw:
        return None, "path: is required (a dot path, `*` and a trailing `**` allowed)"
    parts = tuple(raw.split("."))
    for index, part in enumerate(parts):
        if part == "**" and index != len(parts) - 1:
            return None, f"path: {raw!r}: `**` may only end a path"
        if part not in ("*", "**") and not _SEGMENT.match(part):
            return None, (
                f"path: {raw!r}: segment {part!r} must be a field name (letters, digits, "
                "'_', '-'), `*` or a final `**`"
            )
    return parts, ""


def _strategy(
    raw: dict[str, Any], platforms: Collection[str], problems: list[tuple[int, str]], line: int
) -> Strategy | None:
    name = raw.get("strategy")
    try:
        strategy_name = StrategyName(str(name))
    except ValueError:
        known = ", ".join(s.value for s in StrategyName)
        problems.append(
            (line_of(raw, "strategy", line), f"strategy: unknown strategy {name!r} ({known})")
        )
        return None
    sources = raw.get("sources")
    if strategy_name is not StrategyName.SOURCE_PRIORITY:
        if sources is not None:
            problems.append(
                (
                    line_of(raw, "sources", line),
                    f"sources: only source_priority takes sources, not {name}",
                )
            )
            return None
        return Strategy(strategy_name)
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        problems.append(
            (
                line_of(raw, "sources", line),
                "sources: source_priority needs a list of platforms, best first",
            )
        )
        return None
    ok = True
    for source in sources:
        if source not in platforms:
            problems.append(
                (
                    line_of(raw, "sources", line),
                    f"sources: unknown platform {source!r} (known: {', '.join(platforms)})",
                )
            )
            ok = False
    duplicates = sorted({s for s in sources if sources.count(s) > 1})
    if duplicates:
        problems.append(
            (line_of(raw, "sources", line), f"sources: {', '.join(duplicates)} listed twice")
        )
        ok = False
    return Strategy(strategy_name, tuple(sources)) if ok else None


def parse_strategies(text: str, filename: str, *, platforms: Collection[str]) -> StrategyBook:
    """The strategy book a strategies file declares; ConfigError lists every problem."""
    document = load_yaml(text, filename)
    problems: list[ConfigProblem] = []

    def add(line: int, entry: str, message: str) -> None:
        problems.append(ConfigProblem(filename, line, entry, message))

    if not isinstance(document, dict) or set(document) - {"default", "fields"}:
        add(
            line_of(document, default=1),
            "",
            "the file must be a mapping with `default` and `fields`",
        )
        raise ConfigError(problems)
    default_raw = document.get("default", "most_recent")
    default_problems: list[tuple[int, str]] = []
    default = _strategy(
        default_raw if isinstance(default_raw, dict) else {"strategy": default_raw},
        platforms,
        default_problems,
        line_of(document, "default", 1),
    )
    for line, message in default_problems:
        add(line, "default", message)
    rules_raw = document.get("fields") or []
    if not isinstance(rules_raw, list):
        add(line_of(document, "fields", 1), "", "fields: must be a list of rules")
        raise ConfigError(problems)
    item_lines = rules_raw.item_lines if isinstance(rules_raw, LineList) else []
    rules: list[StrategyRule] = []
    seen: dict[tuple[str, ...], int] = {}
    for index, raw in enumerate(rules_raw):
        line = item_lines[index] if index < len(item_lines) else 0
        entry = f"rule {index + 1}"
        if not isinstance(raw, dict):
            add(line, entry, "must be a mapping with path and strategy")
            continue
        line = line_of(raw, default=line)
        entry = f"rule {index + 1} ({raw.get('path')})"
        unknown = [key for key in raw if key not in _RULE_KEYS]
        for key in unknown:
            add(
                line_of(raw, key, line),
                entry,
                f"unknown key {key!r} (expected {', '.join(_RULE_KEYS)})",
            )
        pattern, why = _pattern(raw.get("path"))
        if pattern is None:
            add(line_of(raw, "path", line), entry, why)
        rule_problems: list[tuple[int, str]] = []
        strategy = _strategy(raw, platforms, rule_problems, line)
        for problem_line, message in rule_problems:
            add(problem_line, entry, message)
        if pattern is None or strategy is None or unknown:
            continue
        if pattern in seen:
            add(line, entry, f"path: {raw['path']!r} already has a rule on line {seen[pattern]}")
            continue
        seen[pattern] = line
        rules.append(StrategyRule(pattern, strategy, line))
    if problems or default is None:
        raise ConfigError(problems)
    return StrategyBook(default, rules)


def load_strategies(path: Path, *, platforms: Collection[str]) -> StrategyBook:
    return parse_strategies(read_config_file(path), str(path), platforms=platforms)


def load_profile_config(
    *,
    strategies_file: Path | None,
    mappings_file: Path | None,
    platforms: Collection[str],
) -> ProfileConfig:
    """Both files (the packaged defaults where no path is given); ConfigError on any problem,
    with the problems of both files together."""
    problems: list[ConfigProblem] = []
    strategies: StrategyBook | None = None
    mappings: MappingSet | None = None
    try:
        strategies = load_strategies(
            strategies_file or DEFAULT_STRATEGIES_FILE, platforms=platforms
        )
    except ConfigError as error:
        problems.extend(error.problems)
    try:
        mappings = load_mappings(mappings_file or DEFAULT_MAPPINGS_FILE, platforms=platforms)
    except ConfigError as error:
        problems.extend(error.problems)
    if problems or strategies is None or mappings is None:
        raise ConfigError(problems)
    return ProfileConfig(strategies, mappings)
