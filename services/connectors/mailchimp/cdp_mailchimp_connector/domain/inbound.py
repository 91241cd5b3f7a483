"""What comes back from Mailchimp: audience webhooks and email activity, as unified events
and profile fragments for the event router and the profile service.

Webhook bodies are form-encoded with PHP-style bracket keys (`data[merges][FNAME]=Ada`).
Event ids are derived from the payload itself (UUID v5), so a webhook Mailchimp delivers
twice, or activity pulled twice, becomes the same event and the router stores it once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

SOURCE = "mailchimp"
_NAMESPACE = uuid.UUID("6f1c3e2a-6a43-4c8e-9a4e-6d8a1c0f5b21")
_KEY = re.compile(r"([^\[\]]+)|\[([^\[\]]*)\]")
WEBHOOK_TYPES = ("subscribe", "unsubscribe", "profile", "upemail", "cleaned", "campaign")
# The default merge tags every audience has, as the unified profile's own fields.
_PROFILE_FIELDS = {"FNAME": "firstName", "LNAME": "lastName", "PHONE": "phone"}


class WebhookError(ValueError):
    """A webhook body that is not a Mailchimp audience webhook."""


@dataclass(frozen=True)
class UnifiedEvent:
    id: str
    type: str
    timestamp: datetime
    email: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    subscriber_hash: str = ""


@dataclass(frozen=True)
class Fragment:
    email: str
    attributes: dict[str, Any]
    observed_at: datetime
    subscriber_hash: str = ""


@dataclass(frozen=True)
class Inbound:
    events: tuple[UnifiedEvent, ...] = ()
    fragments: tuple[Fragment, ...] = ()


def parse_form(body: str) -> dict[str, Any]:
    """`a[b][c]=1&a[d]=2` -> {"a": {"b": {"c": "1"}, "d": "2"}}."""
    result: dict[str, Any] = {}
    for raw_key, value in parse_qsl(body, keep_blank_values=True):
        parts = [plain or bracket for plain, bracket in _KEY.findall(raw_key)]
        if not parts:
            continue
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return result


def _fired_at(raw: str) -> datetime:
    try:
        return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise WebhookError("fired_at is not 'YYYY-MM-DD HH:MM:SS'") from None


def _profile_attributes(data: dict[str, Any]) -> dict[str, Any]:
    merges = data.get("merges")
    merges = merges if isinstance(merges, dict) else {}
    user: dict[str, Any] = {}
    others: dict[str, Any] = {}
    for tag, value in merges.items():
        if tag in ("EMAIL", "INTERESTS"):
            continue
        if tag in _PROFILE_FIELDS:
            if value != "":
                user[_PROFILE_FIELDS[tag]] = value
        elif tag == "ADDRESS" and isinstance(value, dict):
            address = {k: v for k, v in value.items() if v}
            if address:
                user["address"] = address
        else:
            others[tag] = value
    attributes: dict[str, Any] = {}
    if user:
        attributes["user"] = user
    mailchimp: dict[str, Any] = {}
    if others:
        mailchimp["merge_fields"] = others
    if data.get("email_type"):
        mailchimp["email_type"] = data["email_type"]
    if isinstance(merges.get("INTERESTS"), str) and merges["INTERESTS"]:
        mailchimp["interests"] = [g.strip() for g in merges["INTERESTS"].split(",") if g.strip()]
    if mailchimp:
        attributes["mailchimp"] = mailchimp
    return attributes


def from_webhook(body: str) -> Inbound:
    """The events and fragments one audience webhook carries; raises WebhookError."""
    form = parse_form(body)
    kind = form.get("type")
    if kind not in WEBHOOK_TYPES:
        raise WebhookError("type is not a Mailchimp audience webhook type")
    data = form.get("data")
    if not isinstance(data, dict):
        raise WebhookError("data is missing")
    fired_at = _fired_at(str(form.get("fired_at", "")))
    event_id = str(uuid.uuid5(_NAMESPACE, f"webhook:{body}"))
    email = str(data.get("email", ""))
    member_hash = str(data.get("id", ""))
    list_id = str(data.get("list_id", ""))

    def event(event_type: str, properties: dict[str, Any], *, email: str = email) -> UnifiedEvent:
        return UnifiedEvent(
            id=str(uuid.uuid5(_NAMESPACE, f"{event_id}:{event_type}")),
            type=event_type,
            timestamp=fired_at,
            email=email,
            properties={"list_id": list_id, **properties},
            subscriber_hash=member_hash,
        )

    if kind == "subscribe":
        attributes = _profile_attributes(data)
        attributes.setdefault("mailchimp", {})["status"] = "subscribed"
        return Inbound(
            events=(event("email.subscribed", {}),),
            fragments=(Fragment(email, attributes, fired_at, member_hash),),
        )
    if kind == "unsubscribe":
        properties = {
            "action": data.get("action", "unsub"),
            "reason": data.get("reason", ""),
            "campaign_id": data.get("campaign_id", ""),
        }
        fragment = Fragment(email, {"mailchimp": {"status": "unsubscribed"}}, fired_at,
                            member_hash)
        return Inbound(events=(event("email.unsubscribed", properties),), fragments=(fragment,))
    if kind == "profile":
        return Inbound(
            fragments=(Fragment(email, _profile_attributes(data), fired_at, member_hash),)
        )
    if kind == "upemail":
        old_email, new_email = str(data.get("old_email", "")), str(data.get("new_email", ""))
        return Inbound(
            events=(event("email.address_changed", {"new_email": new_email,
                                                    "new_subscriber_hash": data.get("new_id", "")},
                          email=old_email),),
            fragments=(Fragment(new_email, {"user": {"email": new_email}}, fired_at,
                                str(data.get("new_id", ""))),),
        )
    if kind == "cleaned":
        reason = str(data.get("reason", ""))
        event_type = "email.complained" if reason == "abuse" else "email.bounced"
        properties = {"reason": reason, "campaign_id": data.get("campaign_id", ""),
                      "bounce_type": "hard" if reason == "hard" else reason}
        fragment = Fragment(email, {"mailchimp": {"status": "cleaned"}}, fired_at, member_hash)
        return Inbound(events=(event(event_type, properties),), fragments=(fragment,))
    properties = {
        "campaign_id": data.get("id", ""),
        "subject": data.get("subject", ""),
        "status": data.get("status", ""),
        "reason": data.get("reason", ""),
    }
    return Inbound(events=(event("email.campaign_" + str(data.get("status") or "sent"),
                                 properties, email=""),))


ACTIVITY_TYPES = {"open": "email.opened", "click": "email.clicked", "bounce": "email.bounced"}


def parse_timestamp(raw: str) -> datetime:
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def from_activity(
    campaign_id: str, list_id: str, email_entry: dict[str, Any]
) -> list[UnifiedEvent]:
    """Events for one member's entry in a campaign's email-activity report."""
    events: list[UnifiedEvent] = []
    email = str(email_entry.get("email_address", ""))
    member_hash = str(email_entry.get("email_id", ""))
    for item in email_entry.get("activity") or []:
        event_type = ACTIVITY_TYPES.get(str(item.get("action")))
        if event_type is None or not item.get("timestamp"):
            continue
        key = f"activity:{campaign_id}:{member_hash}:{item['action']}:{item['timestamp']}:" \
              f"{item.get('url', '')}"
        properties: dict[str, Any] = {"campaign_id": campaign_id, "list_id": list_id}
        if item.get("url"):
            properties["url"] = item["url"]
        if item.get("type"):
            properties["bounce_type"] = item["type"]
        events.append(
            UnifiedEvent(
                id=str(uuid.uuid5(_NAMESPACE, key)),
                type=event_type,
                timestamp=parse_timestamp(str(item["timestamp"])),
                email=email,
                properties=properties,
                subscriber_hash=member_hash,
            )
        )
    return events
