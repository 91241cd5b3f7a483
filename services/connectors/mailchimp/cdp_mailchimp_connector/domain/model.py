"""The connector's domain: what it sends to Mailchimp and what comes back, as plain data.

No gRPC, SQL or HTTP here. Emails travel inside these objects only; anything meant for a log,
a span or an error message uses the customer id, the subscriber hash's fingerprint or a
field path instead.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
# What a merge field of each suite field type becomes on Mailchimp.
MERGE_TAG_MAX = 10
MAX_MEMBERS_PER_BATCH = 500
MAX_SEGMENT_DELTA = 500


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased email.

    Paths always carry this, never the email: the SDK replaces the substring 'server' anywhere
    in the URL with the datacenter, which would mangle an address like observer@example.com.
    """
    return hashlib.md5(email.strip().lower().encode("utf-8")).hexdigest()


class OperationKind(enum.Enum):
    PUSH_PROFILE = "push_profile"
    DELIVER_EVENT = "deliver_event"
    SYNC_SEGMENT = "sync_segment"
    DELETE_CUSTOMER = "delete_customer"


@dataclass(frozen=True)
class TagChange:
    name: str
    active: bool


@dataclass(frozen=True)
class MemberUpsert:
    """One profile as a Mailchimp member upsert (PUT semantics)."""

    customer_id: str
    email: str
    # Used only when the member does not exist yet; an existing member keeps its status.
    status_if_new: str
    # An explicit preference change (e.g. "unsubscribed"); overwrites whatever the member has.
    status: str | None = None
    merge_fields: dict[str, Any] = field(default_factory=dict)
    tags: tuple[TagChange, ...] = ()
    # Other member fields passed through as given: email_type, language, vip, interests, ...
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def subscriber_hash(self) -> str:
        return subscriber_hash(self.email)

    def member_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"email_address": self.email, "status_if_new": self.status_if_new}
        if self.status:
            body["status"] = self.status
        if self.merge_fields:
            body["merge_fields"] = self.merge_fields
        body.update(self.extra)
        return body

    def to_record(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "email": self.email,
            "status_if_new": self.status_if_new,
            "status": self.status,
            "merge_fields": self.merge_fields,
            "tags": [{"name": t.name, "active": t.active} for t in self.tags],
            "extra": self.extra,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MemberUpsert:
        return cls(
            customer_id=record["customer_id"],
            email=record["email"],
            status_if_new=record["status_if_new"],
            status=record.get("status"),
            merge_fields=dict(record.get("merge_fields") or {}),
            tags=tuple(TagChange(t["name"], t["active"]) for t in record.get("tags") or []),
            extra=dict(record.get("extra") or {}),
        )


@dataclass(frozen=True)
class RecordOutcome:
    """The result for one record of a batch, keyed by customer id, event id or hash."""

    key: str
    success: bool
    error: str = ""
    permanent: bool = False

    @classmethod
    def ok(cls, key: str) -> RecordOutcome:
        return cls(key, True)


class FieldKind(enum.Enum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    BOOLEAN = "boolean"
    PHONE = "phone"
    ADDRESS = "address"


# Mailchimp has no boolean merge field: a dropdown of two choices is the faithful stand-in.
BOOLEAN_CHOICES = ("true", "false")
MAILCHIMP_TYPE = {
    FieldKind.TEXT: "text",
    FieldKind.NUMBER: "number",
    FieldKind.DATE: "date",
    FieldKind.BOOLEAN: "dropdown",
    FieldKind.PHONE: "phone",
    FieldKind.ADDRESS: "address",
}


@dataclass(frozen=True)
class FieldSpec:
    tag: str
    name: str
    kind: FieldKind

    def create_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"tag": self.tag, "name": self.name,
                                "type": MAILCHIMP_TYPE[self.kind]}
        if self.kind is FieldKind.BOOLEAN:
            body["options"] = {"choices": list(BOOLEAN_CHOICES)}
        return body


@dataclass(frozen=True)
class EnsureFieldsResult:
    created: tuple[str, ...]
    existing: tuple[str, ...]


@dataclass(frozen=True)
class MemberEvent:
    """A unified event as a Mailchimp member event."""

    event_id: str
    email: str
    name: str
    properties: dict[str, str]
    occurred_at: datetime | None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "properties": self.properties,
                                "is_syncing": True}
        if self.occurred_at is not None:
            body["occurred_at"] = self.occurred_at.isoformat()
        return body


@dataclass(frozen=True)
class SegmentSync:
    segment_id: str
    segment_name: str
    to_add: tuple[tuple[str, str], ...]  # (customer_id, email)
    to_remove: tuple[tuple[str, str], ...]
    full_resync: bool = False


@dataclass(frozen=True)
class SegmentSyncResult:
    platform_segment_id: str
    added: int
    removed: int
    failures: tuple[RecordOutcome, ...]


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class HealthStatus(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    latency_ms: float
    message: str
    checked_at: datetime
    circuit_state: str


@dataclass(frozen=True)
class FailedOperation:
    id: str
    kind: OperationKind
    subject_id: str
    error: str
    permanent: bool
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class NewFailure:
    """A failure to record: what was attempted (enough to run it again) and why it failed."""

    kind: OperationKind
    subject_id: str
    payload: dict[str, Any]
    error: str
    permanent: bool


@dataclass(frozen=True)
class RetryResult:
    retried: int
    succeeded: int
    still_failing: tuple[FailedOperation, ...]
