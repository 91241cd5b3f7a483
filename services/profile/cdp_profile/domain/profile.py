"""One customer's profile while fragments are applied to it.

`ProfileWork` holds the profile row (unified document and version) and the states of the
fields the fragments touch, loaded up front. Applying a fragment costs the same whatever
the customer's history: each of its fields is folded into that field's state, and the
document is patched where a value changed. `rebuild` replays a whole history (merges,
unmerges, a changed configuration), which gives the state the incremental path reaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cdp_errors import FieldViolation, InvalidArgument
from cdp_mappings.paths import get_path, set_path
from cdp_profile.domain.documents import flatten_document, split_history
from cdp_profile.domain.model import (
    FieldChange,
    FieldState,
    JsonValue,
    Leaf,
    ProfileHead,
    StoredFragment,
    to_micros,
)
from cdp_profile.domain.strategies import StrategyBook, same_value

# Field paths recur in every fragment; their segments and ancestors are worked out once.
_PATH_CACHE_SIZE = 100_000


@lru_cache(maxsize=_PATH_CACHE_SIZE)
def path_parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


@lru_cache(maxsize=_PATH_CACHE_SIZE)
def _ancestors(path: str) -> tuple[str, ...]:
    parts = path.split(".")
    return tuple(".".join(parts[:end]) for end in range(1, len(parts)))


def ancestors(path: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`]: the fields that would have to be objects to hold `path`."""
    return list(_ancestors(path))


def keys_to_load(paths: Iterable[str]) -> set[str]:
    """The field states applying fields at `paths` needs: theirs and their ancestors'."""
    wanted: set[str] = set()
    for path in paths:
        wanted.add(path)
        wanted.update(_ancestors(path))
    return wanted


@dataclass(frozen=True)
class Applied:
    """What one fragment did to a profile."""

    changes: tuple[FieldChange, ...]
    version: int


@dataclass
class ProfileWork:
    head: ProfileHead
    book: StrategyBook
    # Loaded states of the fields this work touches (absent key: the field has no state).
    fields: dict[str, FieldState]
    dirty: dict[str, FieldState] = field(default_factory=dict)
    document: dict[str, JsonValue] = field(init=False)
    version: int = field(init=False)
    changed: bool = field(default=False, init=False)
    # True when every field state is to be replaced by `fields` (rebuilds), rather than the
    # `dirty` ones upserted.
    replaced: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        # The work owns the head it was given (a fresh read of the row): no copy needed.
        self.document = self.head.attributes
        self.version = self.head.version

    @property
    def customer_id(self) -> str:
        return self.head.customer_id

    def stale_fields(self) -> list[str]:
        """Loaded fields whose state was made under another strategy configuration."""
        return [
            path
            for path, state in self.fields.items()
            if state.strategy != self.book.for_path(path).key
        ]

    def shape_conflicts(self, leaves: Sequence[Leaf], field_prefix: str) -> list[FieldViolation]:
        """Fields of a fragment that cannot fit this profile's shape: a value where the profile
        has an object of other fields, or fields inside what the profile holds as a value."""
        violations = []
        fields = self.fields
        for path, _ in leaves:
            holder = next((a for a in _ancestors(path) if a in fields), None)
            if holder is not None:
                violations.append(
                    FieldViolation(
                        f"{field_prefix}.{path}",
                        f"cannot be set: {holder} holds a value in this profile, not an object",
                    )
                )
            elif path not in fields and isinstance(
                get_path(self.document, path_parts(path)), dict
            ):
                violations.append(
                    FieldViolation(
                        f"{field_prefix}.{path}",
                        "cannot hold a value: it is an object of other fields in this profile",
                    )
                )
        return violations

    def _fits(self, leaves: Sequence[Leaf]) -> bool:
        """No shape conflict, decided without building violations (the common case)."""
        fields = self.fields
        document = self.document
        for path, _ in leaves:
            for ancestor in _ancestors(path):
                if ancestor in fields:
                    return False
            if path not in fields:
                node: JsonValue = document
                for part in path_parts(path):
                    if part not in node:
                        break
                    node = node[part]
                    if not isinstance(node, dict):
                        break
                else:
                    return False
        return True

    def apply(
        self,
        leaves: Sequence[Leaf],
        *,
        source: str,
        at: int,
        seq: int,
        field_prefix: str = "attributes",
        strict: bool = True,
    ) -> Applied:
        """Folds one fragment's fields in. With `strict`, a shape conflict rejects the whole
        fragment (InvalidArgument, nothing applied); otherwise conflicting fields are skipped."""
        skipped: set[str] = set()
        if not self._fits(leaves):
            conflicts = self.shape_conflicts(leaves, field_prefix)
            if conflicts and strict:
                raise InvalidArgument(conflicts)
            skipped = {v.field.removeprefix(f"{field_prefix}.") for v in conflicts}
        changes: list[FieldChange] = []
        fields = self.fields
        dirty = self.dirty
        for_path = self.book.for_path
        for path, value in leaves:
            if path in skipped:
                continue
            before = fields.get(path)
            after = for_path(path).fold_value(path, before, value, source, at, seq)
            if after is None or after is before or after == before:
                continue
            fields[path] = after
            dirty[path] = after
            if before is None:
                changes.append(FieldChange(path, None, after.value, after.source))
                set_path(self.document, path_parts(path), after.value)
            elif not same_value(before.value, after.value):
                changes.append(FieldChange(path, before.value, after.value, after.source))
                set_path(self.document, path_parts(path), after.value)
        if changes:
            self.version += 1
            self.changed = True
        return Applied(tuple(changes), self.version)

    def rebuild(self, history: Sequence[StoredFragment]) -> tuple[FieldChange, ...]:
        """Replaces every field with what `history` (in sequence order) gives; returns the
        changes against the document before (a new version when there are any).

        History was validated when it arrived; under a changed configuration a stored field
        may no longer fit (a shape conflict, a non-number where highest_value now applies),
        and such fields are left out rather than failing the rebuild.
        """
        before = {path: state.value for path, state in self.fields.items()}
        before.update(flatten_document(self.document, self.book))
        self.fields = {}
        self.document = {}
        for fragment in history:
            self.apply(
                split_history(fragment.attributes, self.book),
                source=fragment.source,
                at=to_micros(fragment.observed_at),
                seq=fragment.seq,
                strict=False,
            )
        self.dirty = dict(self.fields)
        self.replaced = True
        changes: list[FieldChange] = []
        for path in sorted(before.keys() | self.fields.keys()):
            old = before.get(path)
            state = self.fields.get(path)
            new = state.value if state is not None else None
            if not same_value(old, new):
                changes.append(FieldChange(path, old, new, state.source if state else ""))
        self.version = self.head.version + (1 if changes else 0)
        self.changed = bool(changes)
        return tuple(changes)

    def clear(self) -> None:
        """Empties the profile: its customer was merged into another one."""
        had_values = bool(self.document)
        self.fields = {}
        self.dirty = {}
        self.document = {}
        self.replaced = True
        if had_values:
            self.version += 1
            self.changed = True
