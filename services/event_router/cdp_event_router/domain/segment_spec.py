"""Segment Spec messages (what Segment's and RudderStack's SDKs send) as unified events.

Field names follow the Segment Spec: `messageId`, `type`, `userId`, `anonymousId`,
`timestamp` (falling back to `originalTimestamp`, then `sentAt`), `properties`, `traits`,
`context.{ip, userAgent, locale, page.url, campaign, location, device.id, traits}`.

Types: `track` events keep their name, turned into `object.action` (`Order Completed` ->
`order.completed`, `Product List Viewed` -> `product_list.viewed`: the last word is the
action); `page` -> `page.viewed`, `screen` -> `screen.viewed`, `identify` ->
`user.identified`, `group` -> `group.identified`, `alias` -> `user.aliased`. Identify and
alias carry the identifiers they link (traits' email and phone, previousId), so the router's
identity step ties them to one customer.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cdp_errors import FieldViolation
from cdp_event_router.domain.model import EventIdentifiers, IncomingEvent

SPEC_TYPES = ("track", "identify", "page", "screen", "group", "alias")
_FIXED_TYPES = {
    "page": "page.viewed",
    "screen": "screen.viewed",
    "identify": "user.identified",
    "group": "group.identified",
    "alias": "user.aliased",
}
_WORD = re.compile(r"[^a-z0-9]+")


def event_type_of(name: str) -> str:
    """`Order Completed` -> `order.completed`; a name already dotted is kept (lower-cased)."""
    text = name.strip().lower()
    if "." in text:
        return ".".join(_WORD.sub("_", part).strip("_") for part in text.split("."))
    words = [w for w in _WORD.split(text) if w]
    if len(words) < 2:
        return f"{words[0]}.tracked" if words else ""
    return f"{'_'.join(words[:-1])}.{words[-1]}"


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else "" if value is None else str(value)


def _timestamp(message: Mapping[str, Any]) -> tuple[datetime | None, str]:
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        raw = message.get(key)
        if raw:
            try:
                parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            except ValueError:
                return None, key
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), ""
    return None, ""


def from_segment(
    message: Mapping[str, Any], *, source: str, received_at: datetime, path: str
) -> tuple[IncomingEvent | None, list[FieldViolation]]:
    """One Spec message as an unified event, or the violations that prevent it."""
    problems: list[FieldViolation] = []
    kind = _text(message.get("type")).lower()
    if kind not in SPEC_TYPES:
        problems.append(
            FieldViolation(_at(path, "type"), "must be one of " + ", ".join(SPEC_TYPES))
        )
        return None, problems
    if kind == "track":
        name = _text(message.get("event"))
        if not name:
            problems.append(FieldViolation(_at(path, 'event'), "is required for track"))
        event_type = event_type_of(name)
    else:
        event_type = _FIXED_TYPES[kind]
    timestamp, bad_key = _timestamp(message)
    if bad_key:
        problems.append(FieldViolation(_at(path, bad_key), "is not an ISO 8601 timestamp"))
    elif timestamp is None:
        timestamp = received_at
    context = message.get("context") or {}
    if not isinstance(context, Mapping):
        problems.append(FieldViolation(_at(path, 'context'), "must be an object"))
        context = {}
    properties = message.get("properties") if kind != "identify" else message.get("traits")
    if kind in ("group",):
        properties = {"group_id": _text(message.get("groupId")),
                      "traits": message.get("traits") or {}}
    if kind == "page" or kind == "screen":
        properties = dict(properties or {})
        if message.get("name"):
            properties.setdefault("name", message.get("name"))
    properties = properties or {}
    if not isinstance(properties, Mapping):
        problems.append(FieldViolation(_at(path, 'properties'), "must be an object"))
        properties = {}
    traits = message.get("traits") if kind == "identify" else context.get("traits")
    traits = traits if isinstance(traits, Mapping) else {}
    identifiers = EventIdentifiers(
        user_id=_text(message.get("userId")),
        anonymous_id=_text(message.get("anonymousId") or message.get("previousId")),
        email=_text(traits.get("email")),
        phone=_text(traits.get("phone")),
        device_id=_text((context.get("device") or {}).get("id")
                        if isinstance(context.get("device"), Mapping) else ""),
    )
    if kind == "alias":
        # alias ties the previous id (usually the anonymous id) to the user id.
        identifiers.anonymous_id = _text(message.get("previousId")) or identifiers.anonymous_id
    if problems:
        return None, problems
    unified_context: dict[str, Any] = {}
    for spec_key, ours in (("ip", "ip"), ("userAgent", "user_agent"), ("locale", "locale")):
        if context.get(spec_key):
            unified_context[ours] = _text(context.get(spec_key))
    page = context.get("page")
    if isinstance(page, Mapping) and page.get("url"):
        unified_context["page_url"] = _text(page.get("url"))
    for block in ("campaign", "location"):
        if isinstance(context.get(block), Mapping):
            unified_context[block] = dict(context[block])
    event = IncomingEvent(
        # Segment's own API assigns an id when a sender gives none; so does the router (such
        # an event cannot be deduplicated on retry, which is why every SDK sends one).
        id=_text(message.get("messageId")) or str(uuid.uuid4()),
        type=event_type,
        source=source,
        timestamp=timestamp,
        identifiers=identifiers,
        properties=dict(properties),
        context=unified_context,
        size=len(json.dumps(message, default=str)),
    )
    return event, []
