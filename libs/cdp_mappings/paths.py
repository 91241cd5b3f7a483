"""Dot paths into nested documents: `user.firstName`, `merge_fields.FNAME`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# A path segment is a field name as platforms spell them: letters, digits, `_` and `-`.
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]+$")
MAX_PATH_LENGTH = 256

_MISSING = object()


class PathError(ValueError):
    """A string that is not a dot path of field names."""


def parse_path(text: object) -> tuple[str, ...]:
    """The segments of a dot path; PathError says what is wrong with its shape."""
    if not isinstance(text, str):
        kind = "list" if isinstance(text, list) else "mapping" if isinstance(text, dict) else ""
        raise PathError(f"must be a dot path string, not {kind or type(text).__name__}")
    if not text:
        raise PathError("is empty")
    if len(text) > MAX_PATH_LENGTH:
        raise PathError(f"is {len(text)} characters long; the limit is {MAX_PATH_LENGTH}")
    segments = tuple(text.split("."))
    for index, segment in enumerate(segments):
        if not segment:
            raise PathError(f"{text!r} has an empty segment at position {index + 1}")
        if not _SEGMENT.match(segment):
            raise PathError(
                f"{text!r}: segment {segment!r} may contain only letters, digits, '_' and '-'"
            )
    return segments


def get_path(document: Mapping[str, Any], segments: tuple[str, ...]) -> Any:
    """The value at `segments`, or None when any part of the path is missing."""
    node: Any = document
    for segment in segments:
        if not isinstance(node, Mapping):
            return None
        node = node.get(segment, _MISSING)
        if node is _MISSING:
            return None
    return node


def pop_path(document: dict[str, Any], segments: tuple[str, ...]) -> Any:
    """Removes the value at `segments` and returns it (None when any part is missing)."""
    parent = get_path(document, segments[:-1]) if len(segments) > 1 else document
    if not isinstance(parent, dict):
        return None
    return parent.pop(segments[-1], None)


def set_path(document: dict[str, Any], segments: tuple[str, ...], value: Any) -> None:
    """Sets `value` at `segments`, creating the objects on the way."""
    node = document
    for segment in segments[:-1]:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = {}
            node[segment] = child
        node = child
    node[segments[-1]] = value
