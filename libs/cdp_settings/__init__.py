"""Typed settings read from the environment once, at start.

A settings class is a frozen dataclass whose fields are declared with `setting(...)`:

    @dataclass(frozen=True)
    class DatabaseSettings:
        url: str = setting("DATABASE_URL", doc="PostgreSQL URL")
        pool_size: int = setting("CDP_DB_POOL_SIZE", default=10)

`load_settings(DatabaseSettings)` parses every field from `os.environ` (or a mapping given
for tests) and raises one `SettingsError` naming every missing or malformed variable, so a
service fails at start with a message that says what to fix instead of failing later.
Nested settings dataclasses are loaded recursively.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Secret", "SettingsError", "load_settings", "setting", "describe_settings"]

T = TypeVar("T")

_META_KEY = "cdp_setting"


class Secret:
    """A value that must never be printed: its repr and str are masked."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SettingsError(Exception):
    """Every problem found while loading settings, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


@dataclasses.dataclass(frozen=True)
class _SettingSpec:
    env: str
    doc: str
    parse: Callable[[str], Any] | None
    required: bool


def setting(
    env: str,
    *,
    default: Any = dataclasses.MISSING,
    doc: str = "",
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """Declares a settings field read from the environment variable `env`.

    Args:
        env: the environment variable's name.
        default: the value when the variable is unset or empty; without one it is required.
        doc: one line saying what the value is, shown in error messages and `describe_settings`.
        parse: turns the raw string into the value; by default chosen from the annotation
            (str, int, float, bool, Path, Secret, tuple[str, ...], and `X | None`).
    """
    spec = _SettingSpec(env=env, doc=doc, parse=parse, required=default is dataclasses.MISSING)
    if isinstance(default, (list, dict, set)):
        raise TypeError(f"setting {env}: use an immutable default (a tuple), not {type(default)}")
    return dataclasses.field(default=default, metadata={_META_KEY: spec})


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of true/false/1/0/yes/no/on/off")


def _parse_str_tuple(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _parser_for(args[0])
    if annotation is bool:
        return _parse_bool
    if annotation is int:
        return lambda raw: int(raw.strip())
    if annotation is float:
        return lambda raw: float(raw.strip())
    if annotation is str:
        return lambda raw: raw
    if annotation is Path:
        return lambda raw: Path(raw).expanduser()
    if annotation is Secret:
        return Secret
    if origin is tuple and typing.get_args(annotation) in ((str, Ellipsis),):
        return _parse_str_tuple
    raise TypeError(f"no parser for settings type {annotation!r}; pass parse=")


def _expected(annotation: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", Path: "a path"}
    for candidate, name in names.items():
        if annotation is candidate or candidate in typing.get_args(annotation):
            return name
    return "a valid value"


def load_settings(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Builds `cls` from the environment, raising SettingsError listing every problem."""
    problems: list[str] = []
    value = _load(cls, os.environ if environ is None else environ, problems)
    if problems:
        raise SettingsError(problems)
    return typing.cast(T, value)


def _load(cls: type[Any], environ: Mapping[str, str], problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        spec: _SettingSpec | None = field.metadata.get(_META_KEY)
        if spec is None:
            if dataclasses.is_dataclass(annotation):
                values[field.name] = _load(typing.cast(type, annotation), environ, problems)
                continue
            if field.default is not dataclasses.MISSING or (
                field.default_factory is not dataclasses.MISSING
            ):
                continue
            raise TypeError(f"{cls.__name__}.{field.name} is neither a setting nor nested settings")
        raw = environ.get(spec.env, "")
        if raw.strip() == "":
            if spec.required:
                hint = f" ({spec.doc})" if spec.doc else ""
                problems.append(f"{spec.env} is required but not set{hint}")
            continue
        parse = spec.parse or _parser_for(annotation)
        try:
            values[field.name] = parse(raw)
        except (ValueError, TypeError) as exc:
            shown = "<hidden>" if annotation is Secret else repr(raw)
            problems.append(f"{spec.env}={shown} is not {_expected(annotation)}: {exc}")
    if problems:
        return None
    return cls(**values)


def describe_settings(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(variable, default, doc) for every setting of `cls`, nested ones included."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        spec: _SettingSpec | None = field.metadata.get(_META_KEY)
        if spec is None:
            nested = hints[field.name]
            if dataclasses.is_dataclass(nested):
                rows.extend(describe_settings(typing.cast(type, nested)))
            continue
        default = "(required)" if spec.required else repr(field.default)
        rows.append((spec.env, default, spec.doc))
    return rows
