"""Per-field conflict strategies, applied incrementally.

Each strategy folds one observation into a field's state and never needs the field's
history: what it must remember to decide later observations correctly lives in the state's
`memory`, bounded by the number of sources (source priority, array merges) or of distinct
keys (object merges), never by the number of fragments. Every fold is a function of the set
of observations, whatever order they arrive in: observations are totally ordered by
(observed time, ingestion sequence), so a fragment observed earlier but delivered later
never beats a newer one, and rebuilding a profile from history gives the state the
incremental path reached.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from cdp_profile.domain.model import FieldState, JsonValue, Observation


class StrategyName(StrEnum):
    MOST_RECENT = "most_recent"
    SOURCE_PRIORITY = "source_priority"
    MERGE_ARRAYS = "merge_arrays"
    DEEP_MERGE = "deep_merge"
    HIGHEST_VALUE = "highest_value"
    FIRST_SEEN = "first_seen"
    NON_EMPTY = "non_empty"


def canonical(value: JsonValue) -> str:
    """A value's identity for comparisons: 1 and true, or {"a":1,"b":2} key orders, differ
    or agree exactly as JSON says."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def same_value(a: JsonValue, b: JsonValue) -> bool:
    """Equal as JSON: 1 and true differ (Python says 1 == True), key order does not matter."""
    if a is None or b is None:
        return a is b
    if type(a) is type(b) and isinstance(a, (str, int, float, bool)):
        return bool(a == b)
    # Python's equality is coarser than JSON's (1 == 1.0 == True), never finer: values it
    # tells apart differ as JSON too, and only values it finds equal need the exact check.
    if a != b:
        return False
    return _same_json(a, b)


def _same_json(a: JsonValue, b: JsonValue) -> bool:
    """`canonical(a) == canonical(b)`, decided without encoding either (values of an
    unchanged list or object are compared on every fold that leaves them as they were)."""
    kind = type(a)
    if kind is not type(b):
        # Different JSON types never write alike (1, 1.0 and true differ).
        if kind in _JSON_TYPES and type(b) in _JSON_TYPES:
            return False
        return canonical(a) == canonical(b)
    if kind is dict:
        return a.keys() == b.keys() and all(_same_json(a[key], b[key]) for key in a)
    if kind is list:
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if kind is float:
        if a == b:
            # 0.0 and -0.0 are equal numbers but different JSON.
            return a != 0.0 or str(a) == str(b)
        return False
    if kind in _JSON_TYPES:
        return bool(a == b)
    return canonical(a) == canonical(b)


_JSON_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})


def is_empty(value: JsonValue) -> bool:
    return value is None or value in ([], {}) or (isinstance(value, str) and not value.strip())


def is_number(value: JsonValue) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _newer(entry: dict[str, Any] | None, at: int, seq: int) -> bool:
    return entry is None or at > entry["at"] or (at == entry["at"] and seq > entry["seq"])


@dataclass(frozen=True)
class Strategy:
    """A configured strategy: its name and, for source priority, the platform order."""

    name: StrategyName
    sources: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        if self.name is StrategyName.SOURCE_PRIORITY:
            return f"{self.name.value}:{'>'.join(self.sources)}"
        return self.name.value

    @cached_property
    def _fold(self) -> _Fold:
        return _FOLDS[self.name]

    @cached_property
    def _ranks(self) -> dict[str, tuple[int, str]]:
        """Source priority: each listed source's rank and the reason its value wins."""
        order = " > ".join(self.sources)
        count = len(self.sources)
        return {
            source: (rank, f"{source} ranks {rank} of {count} ({order})")
            for rank, source in enumerate(self.sources, start=1)
        }

    @cached_property
    def keeps_objects_whole(self) -> bool:
        """An object at a field with this strategy is one value, not a tree of fields."""
        return self.name is StrategyName.DEEP_MERGE

    @cached_property
    def restricts_values(self) -> bool:
        """Whether `accepts` refuses any value (only highest_value does: it needs numbers)."""
        return self.name is StrategyName.HIGHEST_VALUE

    def accepts(self, value: JsonValue) -> str | None:
        """Why `value` cannot be an observation of a field with this strategy, if it cannot."""
        if self.name is StrategyName.HIGHEST_VALUE and not is_number(value):
            return "highest_value needs a number"
        return None

    def fold(
        self, path: str, state: FieldState | None, observation: Observation
    ) -> FieldState | None:
        """The field's state once `observation` is taken into account (None: still no value)."""
        value, source, at, seq = observation
        return self.fold_value(path, state, value, source, at, seq)

    def fold_value(
        self, path: str, state: FieldState | None, value: JsonValue, source: str, at: int, seq: int
    ) -> FieldState | None:
        """`fold` for an observation given by its parts (the ingestion path makes no
        Observation per field)."""
        if state is not None and state.strategy != self.key:
            raise ValueError(f"state of {path} was made by {state.strategy}, not {self.key}")
        return self._fold(self, path, state, value, source, at, seq)


def _won(
    strategy: Strategy,
    path: str,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
    reason: str,
    memory: dict[str, Any],
) -> FieldState:
    """The state of a field whose value is this one observation's."""
    return FieldState(path, strategy.key, value, source, at, seq, (), reason, memory)


_MOST_RECENT = "newest observation (by observed time)"
_NON_EMPTY = "newest non-empty observation (by observed time)"
_FIRST_SEEN = "earliest observation (by observed time)"
_HIGHEST = "highest value observed"


def _most_recent(
    strategy: Strategy,
    path: str,
    state: FieldState | None,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
) -> FieldState:
    if state is None:
        return _won(strategy, path, value, source, at, seq, _MOST_RECENT, {})
    if at > state.at or (at == state.at and seq > state.seq):
        return _won(strategy, path, value, source, at, seq, _MOST_RECENT, state.memory)
    return state


def _non_empty(
    strategy: Strategy,
    path: str,
    state: FieldState | None,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
) -> FieldState | None:
    if is_empty(value):
        return state
    if state is None:
        return _won(strategy, path, value, source, at, seq, _NON_EMPTY, {})
    if at > state.at or (at == state.at and seq > state.seq):
        return _won(strategy, path, value, source, at, seq, _NON_EMPTY, state.memory)
    return state


def _first_seen(
    strategy: Strategy,
    path: str,
    state: FieldState | None,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
) -> FieldState:
    if state is None:
        return _won(strategy, path, value, source, at, seq, _FIRST_SEEN, {})
    if at < state.at or (at == state.at and seq < state.seq):
        return _won(strategy, path, value, source, at, seq, _FIRST_SEEN, state.memory)
    return state


def _highest_value(
    strategy: Strategy,
    path: str,
    state: FieldState | None,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
) -> FieldState | None:
    if not is_number(value):
        return state
    if state is None:
        return _won(strategy, path, value, source, at, seq, _HIGHEST, {})
    # Equal values credit the source that reached the value first.
    if value > state.value or (
        value == state.value and (at < state.at or (at == state.at and seq < state.seq))
    ):
        return _won(strategy, path, value, source, at, seq, _HIGHEST, state.memory)
    return state


def _by_source(
    state: FieldState | None, value: JsonValue, source: str, at: int, seq: int
) -> dict[str, dict[str, Any]]:
    """Each source's latest observation, with this one folded in."""
    latest: dict[str, dict[str, Any]] = dict(state.memory.get("by_source", {})) if state else {}
    if _newer(latest.get(source), at, seq):
        latest[source] = {"v": value, "at": at, "seq": seq}
    return latest


def _source_priority(
    strategy: Strategy,
    path: str,
    state: FieldState | None,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
) -> FieldState | None:
    latest = _by_source(state, value, source, at, seq)
    chosen: tuple[str, dict[str, Any]] | None = None
    reason = ""
    best = len(strategy.sources) + 1
    ranks = strategy._ranks
    for candidate, entry in latest.items():
        ranked = ranks.get(candidate)
        if ranked is not None and ranked[0] < best and not is_empty(entry["v"]):
            best, reason = ranked
            chosen = (candidate, entry)
    if chosen is None:
        # No listed source has a value: fall back to the newest value of any other source.
        order = " > ".join(strategy.sources)
        candidates = [(s, e) for s, e in latest.items() if not is_empty(e["v"])]
        if not candidates:
            candidates = list(latest.items())
        if not candidates:
            return state
        chosen = max(candidates, key=lambda item: (item[1]["at"], item[1]["seq"]))
        reason = f"no listed source ({order}) has a value; newest observation, from {chosen[0]}"
    winner, entry = chosen
    return FieldState(
        path,
        strategy.key,
        entry["v"],
        winner,
        entry["at"],
        entry["seq"],
        (),
        reason,
        {"by_source": latest},
    )


def _merge_arrays(
    strategy: Strategy,
    path: str,
    state: FieldState | None,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
) -> FieldState:
    latest = _by_source(state, value if isinstance(value, list) else [value], source, at, seq)
    # Each source's latest list counts, so a tag a source drops disappears unless another
    # source still has it; the union keeps first-seen order, oldest contribution first.
    ordered = sorted(latest.items(), key=lambda item: (item[1]["at"], item[1]["seq"]))
    merged: list[JsonValue] = []
    seen: set[str] = set()
    contributors: list[str] = []
    for contributor, entry in ordered:
        added = False
        for element in entry["v"]:
            # Strings (tags, the common case) are their own identity; other values go by JSON.
            identity = element if isinstance(element, str) else "\0" + canonical(element)
            if identity not in seen:
                seen.add(identity)
                merged.append(element)
                added = True
        if added or entry["v"]:
            contributors.append(contributor)
    newest_source, newest = ordered[-1]
    names = ", ".join(contributors) or newest_source
    return FieldState(
        path,
        strategy.key,
        merged,
        newest_source,
        newest["at"],
        newest["seq"],
        tuple(contributors),
        f"union of the latest lists from {names}, duplicates removed",
        {"by_source": latest},
    )


def _object_leaves(value: JsonValue, prefix: str, into: list[tuple[str, JsonValue]]) -> None:
    """Appends the leaves of `value` under `prefix` (relative dot paths) to `into`."""
    # Empty objects say nothing about any key, so they add no leaf.
    if isinstance(value, dict):
        for key, child in value.items():
            _object_leaves(child, f"{prefix}.{key}" if prefix else key, into)
    elif value is not None:
        into.append((prefix, value))


def _conflicts(a: str, b: str) -> bool:
    """Two relative paths that cannot both hold a value: equal, or one inside the other."""
    if a == "" or b == "":
        return True
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _by_recency(item: tuple[str, dict[str, Any]]) -> tuple[int, int]:
    return (-item[1]["at"], -item[1]["seq"])


def _deep_merge(
    strategy: Strategy,
    path: str,
    state: FieldState | None,
    value: JsonValue,
    source: str,
    at: int,
    seq: int,
) -> FieldState | None:
    leaves: dict[str, dict[str, Any]] = dict(state.memory.get("leaves", {})) if state else {}
    observed: list[tuple[str, JsonValue]] = []
    _object_leaves(value, "", observed)
    changed = False
    for relative, leaf in observed:
        if _newer(leaves.get(relative), at, seq):
            leaves[relative] = {"v": leaf, "at": at, "seq": seq, "src": source}
            changed = True
    if not changed:
        return state
    # Every key keeps its newest value; where keys collide in shape (a value here, an object
    # there) the newer one wins. Deciding at read time keeps the result order-independent.
    accepted: list[tuple[str, dict[str, Any]]] = []
    for relative, entry in sorted(leaves.items(), key=_by_recency):
        for kept, _ in accepted:
            if _conflicts(relative, kept):
                break
        else:
            accepted.append((relative, entry))
    merged: JsonValue = {}
    for relative, entry in sorted(accepted, key=lambda item: item[0]):
        if relative == "":
            merged = entry["v"]
            break
        node = merged
        *parents, name = relative.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[name] = entry["v"]
    newest = accepted[0][1]
    contributors = tuple(sorted({entry["src"] for _, entry in accepted}))
    return FieldState(
        path,
        strategy.key,
        merged,
        newest["src"],
        newest["at"],
        newest["seq"],
        contributors,
        f"objects from {', '.join(contributors)} merged key by key; newer keys win",
        {"leaves": leaves},
    )


_Fold = Callable[
    [Strategy, str, FieldState | None, JsonValue, str, int, int], FieldState | None
]
_FOLDS: dict[StrategyName, _Fold] = {
    StrategyName.MOST_RECENT: _most_recent,
    StrategyName.SOURCE_PRIORITY: _source_priority,
    StrategyName.MERGE_ARRAYS: _merge_arrays,
    StrategyName.DEEP_MERGE: _deep_merge,
    StrategyName.HIGHEST_VALUE: _highest_value,
    StrategyName.FIRST_SEEN: _first_seen,
    StrategyName.NON_EMPTY: _non_empty,
}

# How specific a pattern segment is: a literal name beats `*` (one segment), which beats a
# trailing `**` (one or more segments).
_LITERAL, _ONE, _MANY = 2, 1, 0


@dataclass(frozen=True)
class StrategyRule:
    """`pattern` (dot path with `*` / trailing `**` wildcards) resolved with `strategy`."""

    pattern: tuple[str, ...]
    strategy: Strategy
    line: int = 0

    @property
    def specificity(self) -> tuple[int, ...]:
        return tuple(
            _MANY if part == "**" else _ONE if part == "*" else _LITERAL for part in self.pattern
        )

    def matches(self, path: tuple[str, ...]) -> bool:
        if self.pattern and self.pattern[-1] == "**":
            head = self.pattern[:-1]
            if len(path) <= len(head):
                return False
            return all(p == "*" or p == s for p, s in zip(head, path, strict=False))
        if len(path) != len(self.pattern):
            return False
        return all(p == "*" or p == s for p, s in zip(self.pattern, path, strict=True))


class StrategyBook:
    """Which strategy resolves each field: the most specific matching rule, else the default.

    Specificity is compared segment by segment from the left, so `user.*` beats `*.email`
    for `user.email`, and `customer.*` beats `customer.**` for `customer.totalSpent`.
    """

    def __init__(self, default: Strategy, rules: Iterable[StrategyRule] = ()) -> None:
        self.default = default
        self.rules = tuple(sorted(rules, key=lambda r: r.specificity, reverse=True))
        self._cache: dict[str, Strategy] = {}

    def for_path(self, path: str) -> Strategy:
        found = self._cache.get(path)
        if found is None:
            segments = tuple(path.split("."))
            found = next(
                (rule.strategy for rule in self.rules if rule.matches(segments)), self.default
            )
            if len(self._cache) < 100_000:
                self._cache[path] = found
        return found
