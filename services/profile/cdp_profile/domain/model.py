"""The profile service's values: fragments, field states with provenance, profiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

# A JSON value as it arrives in a fragment's attributes (dict, list, str, int, float, bool).
JsonValue = Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch: PostgreSQL's precision, and a total order on times."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class Identifiers:
    """What a fragment knows about who it is about, for the identity service to resolve."""

    user_id: str = ""
    email: str = ""
    phone: str = ""
    anonymous_id: str = ""
    session_id: str = ""
    device_id: str = ""
    platform_ids: tuple[tuple[str, str], ...] = ()
    cookies: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not any(
            (
                self.user_id,
                self.email,
                self.phone,
                self.anonymous_id,
                self.session_id,
                self.device_id,
                self.platform_ids,
                self.cookies,
            )
        )


@dataclass(frozen=True)
class IngestFragment:
    """Command: store what `source` observed about a customer at `observed_at`.

    `observed_at` is the raw (seconds, nanos) of the request's timestamp, None when absent;
    `attributes_size` is the serialized size, checked before anything else is looked at.
    """

    source: str
    customer_id: str
    identifiers: Identifiers
    attributes: dict[str, JsonValue]
    observed_at: tuple[int, int] | None
    attributes_size: int = 0


class Leaf(NamedTuple):
    """One field of a fragment: its dot path in the unified profile and its value."""

    path: str
    value: JsonValue


@dataclass(frozen=True)
class Fragment:
    """A validated fragment, split into the fields the strategies resolve."""

    source: str
    customer_id: str
    identifiers: Identifiers
    attributes: dict[str, JsonValue]
    observed_at: datetime
    leaves: tuple[Leaf, ...]

    @property
    def paths(self) -> list[str]:
        return [leaf.path for leaf in self.leaves]

    def resolved(self, customer_id: str) -> Fragment:
        return Fragment(
            self.source,
            customer_id,
            self.identifiers,
            self.attributes,
            self.observed_at,
            self.leaves,
        )


@dataclass(frozen=True)
class StoredFragment:
    """One row of history. `ingested_for` is the customer the fragment was sent for; it
    never changes, so an unmerge can give a merged customer its own fragments back."""

    id: str
    seq: int
    customer_id: str
    ingested_for: str
    source: str
    observed_at: datetime
    received_at: datetime
    attributes: dict[str, JsonValue]


class Observation(NamedTuple):
    """One value for one field: what a strategy folds into the field's state."""

    value: JsonValue
    source: str
    at: int  # microseconds since the epoch (observed time)
    seq: int  # ingestion order, the tie-break between equal observed times

    @property
    def order(self) -> tuple[int, int]:
        return (self.at, self.seq)


# Leaves, observations, field states and changes are made for every field of every fragment:
# they are named tuples and a slotted dataclass, several times cheaper to build than frozen
# dataclasses. A field state is never changed once made (strategies build a new one).
@dataclass(slots=True)
class FieldState:
    """One field of a unified profile: the winning value, its provenance and whatever the
    strategy needs to decide the next observation without re-reading history (`memory`)."""

    path: str
    # The strategy and its parameters, e.g. "source_priority:crm>ecommerce"; a state made
    # under another configuration is rebuilt from history before it is used again.
    strategy: str
    value: JsonValue
    source: str
    at: int
    seq: int
    contributing_sources: tuple[str, ...] = ()
    reason: str = ""
    memory: dict[str, Any] = field(default_factory=dict)

    @property
    def observed_at(self) -> datetime:
        return from_micros(self.at)

    @property
    def strategy_name(self) -> str:
        return self.strategy.split(":", 1)[0]


@dataclass
class ProfileHead:
    """The profile row: the unified document, its version, and merge / forget markers."""

    customer_id: str
    version: int
    attributes: dict[str, JsonValue]
    created_at: datetime
    updated_at: datetime
    merged_into: str | None = None
    forgotten: bool = False


class FieldChange(NamedTuple):
    path: str
    # None when the field is new.
    old_value: JsonValue
    # None when the field was removed (only a rebuild removes fields).
    new_value: JsonValue
    source: str


@dataclass(frozen=True)
class UnifiedProfile:
    customer_id: str
    version: int
    attributes: dict[str, JsonValue]
    fields: tuple[FieldState, ...]
    updated_at: datetime


@dataclass(frozen=True)
class IngestResult:
    customer_id: str
    fragment_id: str
    changed_fields: tuple[str, ...]
    profile_version: int
