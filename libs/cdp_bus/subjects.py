"""Subjects and streams of the suite's broadcast events, defined once.

Every subject starts with `cdp.`; each area has its own JetStream stream so that retention
can differ (events are kept longer than identity notifications, for replay).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

IDENTITY_CREATED = "cdp.identity.created"
IDENTITY_MERGED = "cdp.identity.merged"
IDENTITY_UNMERGED = "cdp.identity.unmerged"
IDENTITY_FORGOTTEN = "cdp.identity.forgotten"
PROFILE_UPDATED = "cdp.profile.updated"
PROFILE_DELETED = "cdp.profile.deleted"
SEGMENT_MEMBERSHIP = "cdp.segment.membership"
EVENTS_PREFIX = "cdp.events"
ROUTED_PREFIX = "cdp.routed"
DEAD_LETTER_PREFIX = "cdp.deadletter"

_TOKEN = re.compile(r"^[a-z0-9_\-]+$")


def event_subject(event_type: str) -> str:
    """`cdp.events.email.opened` for event type `email.opened`."""
    _check_tokens(event_type)
    return f"{EVENTS_PREFIX}.{event_type}"


def routed_subject(target: str, event_type: str) -> str:
    """`cdp.routed.crm.email.opened`: the events routed to one target platform."""
    _check_tokens(target)
    _check_tokens(event_type)
    return f"{ROUTED_PREFIX}.{target}.{event_type}"


def dead_letter_subject(consumer: str) -> str:
    _check_tokens(consumer)
    return f"{DEAD_LETTER_PREFIX}.{consumer}"


def _check_tokens(dotted: str) -> None:
    for token in dotted.split("."):
        if not _TOKEN.match(token):
            raise ValueError(f"{dotted!r} is not a valid subject part (a-z, 0-9, _ and - only)")


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float
    # Window in which JetStream drops a message whose Nats-Msg-Id it has already stored:
    # long enough to cover an outbox relay restarting after a crash.
    duplicate_window_seconds: float = 600.0


DAY = 86400.0

STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("CDP_EVENTS", (f"{EVENTS_PREFIX}.>",), max_age_seconds=7 * DAY),
    StreamSpec("CDP_ROUTED", (f"{ROUTED_PREFIX}.>",), max_age_seconds=7 * DAY),
    StreamSpec("CDP_IDENTITY", ("cdp.identity.>",), max_age_seconds=7 * DAY),
    StreamSpec("CDP_PROFILE", ("cdp.profile.>",), max_age_seconds=7 * DAY),
    StreamSpec("CDP_SEGMENT", ("cdp.segment.>",), max_age_seconds=7 * DAY),
    StreamSpec("CDP_DEADLETTER", (f"{DEAD_LETTER_PREFIX}.>",), max_age_seconds=30 * DAY),
)
