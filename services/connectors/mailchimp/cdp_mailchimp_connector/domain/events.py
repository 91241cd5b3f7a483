"""Unified events as Mailchimp member events."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from cdp_mailchimp_connector.domain.model import MemberEvent

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_\-]+")
NAME_MIN, NAME_MAX = 2, 30


def event_name(event_type: str) -> str:
    """`order.completed` -> `order_completed`: Mailchimp's names are 2-30 of [A-Za-z0-9_-]."""
    name = _NOT_ALLOWED.sub("_", event_type.strip()).strip("_")[:NAME_MAX]
    return name if len(name) >= NAME_MIN else ""


def _plain(value: Any) -> Any:
    """Integral floats as ints: protobuf Struct carries every number as a double."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def string_properties(properties: dict[str, Any]) -> dict[str, str]:
    """Mailchimp event properties are strings: scalars as text, anything nested as JSON."""
    result: dict[str, str] = {}
    for key, value in properties.items():
        if isinstance(value, str):
            result[str(key)] = value
        elif isinstance(value, bool):
            result[str(key)] = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            result[str(key)] = str(int(value))
        elif value is None:
            result[str(key)] = ""
        elif isinstance(value, (int, float)):
            result[str(key)] = str(value)
        else:
            result[str(key)] = json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))
    return result


def to_member_event(
    event_id: str,
    event_type: str,
    email: str,
    properties: dict[str, Any],
    occurred_at: datetime | None,
) -> MemberEvent | str:
    """The member event, or why this event cannot be one (a reason without personal data)."""
    if not email.strip():
        return "identifiers.email is required to deliver an event to Mailchimp"
    name = event_name(event_type)
    if not name:
        return "type must yield an event name of 2-30 letters, digits, _ or -"
    return MemberEvent(event_id, email.strip(), name, string_properties(properties), occurred_at)
