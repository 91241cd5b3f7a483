"""One in-memory Mailchimp account: audiences, members, merge fields, tags and segments,
webhooks, events, campaigns and activity, with the member-status rules of the real API.

Everything here is synchronous and runs on the event loop's thread, so no locking is
needed; the HTTP layer (`app.py`) and batch operations (`batches.py`) both call
`Account.dispatch`. Changes that Mailchimp announces through webhooks are queued on
`self.notices` for `webhooks.py` to deliver.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailchimp_sandbox import merge_fields
from mailchimp_sandbox.errors import ApiError, bad_request, invalid, not_found

STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
MAX_BATCH_MEMBERS = 500
MAX_SEGMENT_DELTA = 500
MAX_COUNT = 1000
_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-']+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_\-]{2,30}$")
_STATS: dict[str, Any] = {"avg_open_rate": 0, "avg_click_rate": 0}
_LOCATION: dict[str, Any] = {
    "latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0, "country_code": "", "timezone": "",
    "region": "",
}
WEBHOOK_EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode("utf-8")).hexdigest()


_clock_cache: tuple[int, str] = (0, "")


def now_text() -> str:
    """Now as Mailchimp writes it (`2026-12-04T10:00:00+00:00`), computed once a second."""
    global _clock_cache
    second = int(time.time())
    if _clock_cache[0] != second:
        _clock_cache = (second, datetime.fromtimestamp(second, UTC).isoformat())
    return _clock_cache[1]


def parse_bool(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("true", "1", "yes")


def page(query: dict[str, str]) -> tuple[int, int]:
    try:
        count = int(query.get("count", "10"))
        offset = int(query.get("offset", "0"))
    except ValueError:
        raise bad_request("count and offset must be integers.") from None
    if count < 0 or offset < 0:
        raise bad_request("count and offset must not be negative.")
    return min(count, MAX_COUNT), offset


def links(path: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"https://us1.api.mailchimp.com/3.0{path}", "method": "GET"}]


@dataclass
class Notice:
    """A change Mailchimp announces to a list's webhooks."""

    list_id: str
    type: str
    source: str  # "api", "user" or "admin"
    data: dict[str, Any]
    fired_at: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    )


@dataclass
class Segment:
    id: int
    name: str
    type: str  # static or saved
    list_id: str
    members: set[str] = field(default_factory=set)
    options: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_text)
    updated_at: str = field(default_factory=now_text)

    def view(self) -> dict[str, Any]:
        view = {
            "id": self.id,
            "name": self.name,
            "member_count": len(self.members),
            "type": self.type,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "list_id": self.list_id,
            "_links": links(f"/lists/{self.list_id}/segments/{self.id}"),
        }
        if self.options:
            view["options"] = self.options
        return view


@dataclass
class Audience:
    id: str
    web_id: int
    name: str
    double_optin: bool
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)
    merge_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    segments: dict[int, Segment] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    activity: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Who unsubscribed each unsubscribed member: "user" (themselves) or "api"/"admin".
    unsubscribed_by: dict[str, str] = field(default_factory=dict)
    date_created: str = field(default_factory=now_text)

    def segment_named(self, name: str) -> Segment | None:
        for segment in self.segments.values():
            if segment.name == name:
                return segment
        return None


Handler = Callable[..., tuple[int, Any]]


class Account:
    """The account's state and every endpoint the sandbox serves, by method and path."""

    def __init__(self, *, default_list_id: str = "", double_optin: bool = False) -> None:
        self.lists: dict[str, Audience] = {}
        self.campaigns: dict[str, dict[str, Any]] = {}
        self.notices: list[Notice] = []
        self._next_id = 1
        # Ids only need to look like Mailchimp's, not be secret: a fast generator will do.
        self._random = random.Random()
        if default_list_id:
            self.create_list({"name": "CDP Sandbox"}, list_id=default_list_id,
                             double_optin=double_optin)

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ---- dispatch -------------------------------------------------------------------------

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler for `method path` and its path parameters, or None."""
        allowed = False
        for verb, pattern, handler in _ROUTES:
            matched = pattern.match(path)
            if matched:
                if verb == method:
                    return handler, matched.groupdict()
                allowed = True
        if allowed:
            raise ApiError(
                405, "Method Not Allowed", "The requested method and resource are not compatible."
            )
        return None

    def dispatch(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        """(status, JSON body or None for 204) for one API call; raises ApiError."""
        found = self.route(method, path)
        if found is None:
            raise not_found()
        handler, params = found
        return handler(self, query=query, body=body, **params)

    # ---- helpers --------------------------------------------------------------------------

    def audience(self, list_id: str) -> Audience:
        audience = self.lists.get(list_id)
        if audience is None:
            raise not_found("list")
        return audience

    def _member(self, audience: Audience, key: str) -> dict[str, Any]:
        found = audience.members.get(self._key(audience, key))
        if found is None:
            raise not_found("list member")
        return found

    @staticmethod
    def _key(audience: Audience, key: str) -> str:
        """A path's subscriber hash; the email or contact id are accepted too, as the API does."""
        if "@" in key:
            return subscriber_hash(key)
        if len(key) == 32 and key not in audience.members:
            for member_hash, member in audience.members.items():
                if member["contact_id"] == key:
                    return member_hash
        return key.lower()

    @staticmethod
    def _body(body: Any) -> dict[str, Any]:
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, "JSON Parse Exception", "The request body must be a JSON object.")
        return body

    def _tags_of(self, audience: Audience, member_hash: str) -> list[dict[str, Any]]:
        return [
            {"id": s.id, "name": s.name}
            for s in audience.segments.values()
            if s.type == "static" and member_hash in s.members
        ]

    def member_view(self, audience: Audience, member: dict[str, Any]) -> dict[str, Any]:
        tags = self._tags_of(audience, member["id"])
        # Links are built per reply rather than stored: a large audience costs less memory.
        return {**member, "tags": tags, "tags_count": len(tags),
                "_links": links(f"/lists/{audience.id}/members/{member['id']}")}

    # ---- account and lists ----------------------------------------------------------------

    def ping(self, **_: Any) -> tuple[int, Any]:
        return 200, {"health_status": "Everything's Chimpy!"}

    def create_list(
        self, body: dict[str, Any], *, list_id: str = "", double_optin: bool | None = None
    ) -> Audience:
        list_id = list_id or secrets.token_hex(5)
        audience = Audience(
            id=list_id,
            web_id=self._id(),
            name=str(body.get("name") or "Audience"),
            double_optin=bool(body.get("double_optin", False))
            if double_optin is None
            else double_optin,
        )
        for order, default in enumerate(merge_fields.DEFAULT_FIELDS, start=1):
            defined = merge_fields.definition(list_id, order, default, order)
            audience.merge_fields[defined["tag"]] = defined
        self.lists[list_id] = audience
        return audience

    def list_view(self, audience: Audience, query: dict[str, str] | None = None) -> dict[str, Any]:
        statuses = [m["status"] for m in audience.members.values()]
        stats: dict[str, Any] = {
            "member_count": statuses.count("subscribed"),
            "unsubscribe_count": statuses.count("unsubscribed"),
            "cleaned_count": statuses.count("cleaned"),
            "member_count_since_send": 0,
            "unsubscribe_count_since_send": 0,
            "cleaned_count_since_send": 0,
            "campaign_count": sum(
                1 for c in self.campaigns.values() if c["recipients"]["list_id"] == audience.id
            ),
            "merge_field_count": len(audience.merge_fields),
            "avg_sub_rate": 0,
            "avg_unsub_rate": 0,
            "target_sub_rate": 0,
            "open_rate": 0,
            "click_rate": 0,
        }
        if query and parse_bool(query.get("include_total_contacts")):
            stats["total_contacts"] = len(statuses)
        return {
            "id": audience.id,
            "web_id": audience.web_id,
            "name": audience.name,
            "contact": {
                "company": "CDP Sandbox",
                "address1": "1 Sandbox Way",
                "city": "Atlanta",
                "state": "GA",
                "zip": "30308",
                "country": "US",
            },
            "permission_reminder": "You signed up on our site.",
            "use_archive_bar": False,
            "campaign_defaults": {
                "from_name": "CDP",
                "from_email": "news@cdp.invalid",
                "subject": "",
                "language": "en",
            },
            "notify_on_subscribe": "",
            "notify_on_unsubscribe": "",
            "date_created": audience.date_created,
            "list_rating": 0,
            "email_type_option": False,
            "visibility": "prv",
            "double_optin": audience.double_optin,
            "has_welcome": False,
            "marketing_permissions": False,
            "stats": stats,
            "_links": links(f"/lists/{audience.id}"),
        }

    def get_lists(self, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        count, offset = page(query)
        views = [self.list_view(a, query) for a in self.lists.values()]
        return 200, {
            "lists": views[offset : offset + count],
            "total_items": len(views),
            "constraints": {"may_create": True, "max_instances": 100, "current_total_instances":
                            len(views)},
            "_links": links("/lists"),
        }

    def post_list(self, *, body: Any, **_: Any) -> tuple[int, Any]:
        body = self._body(body)
        if not body.get("name"):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "name", "message": "This value should not be blank."}],
            )
        return 200, self.list_view(self.create_list(body))

    def get_list(self, *, list_id: str, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        return 200, self.list_view(self.audience(list_id), query)

    # ---- members --------------------------------------------------------------------------

    def get_members(self, *, list_id: str, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        count, offset = page(query)
        members = list(audience.members.values())
        status = query.get("status")
        if status:
            members = [m for m in members if m["status"] == status]
        since = query.get("since_last_changed")
        if since:
            members = [m for m in members if m["last_changed"] >= since]
        selected = members[offset : offset + count]
        return 200, {
            "members": [self.member_view(audience, m) for m in selected],
            "list_id": list_id,
            "total_items": len(members),
            "_links": links(f"/lists/{list_id}/members"),
        }

    def get_member(self, *, list_id: str, hash: str, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        return 200, self.member_view(audience, self._member(audience, hash))

    def post_member(self, *, list_id: str, query: dict[str, str], body: Any, **_: Any
                    ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        body = self._body(body)
        email = self._email(body)
        member_hash = subscriber_hash(email)
        if body.get("status") not in STATUSES:
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "status", "message": "Required and must be a valid status."}],
            )
        existing = audience.members.get(member_hash)
        if existing is not None and existing["status"] != "archived":
            raise ApiError(
                400,
                "Member Exists",
                f"{email} is already a list member. Use PUT to insert or update list members.",
            )
        member = self.upsert(audience, member_hash, body, query, creating_only=True)
        for tag in body.get("tags") or []:
            self._tag(audience, member_hash, str(tag), active=True)
        return 200, self.member_view(audience, member)

    def put_member(self, *, list_id: str, hash: str, query: dict[str, str], body: Any, **_: Any
                   ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self.upsert(audience, self._key(audience, hash), self._body(body), query)
        return 200, self.member_view(audience, member)

    def patch_member(self, *, list_id: str, hash: str, query: dict[str, str], body: Any, **_: Any
                     ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        existing = self._member(audience, hash)
        body = self._body(body)
        body.setdefault("email_address", existing["email_address"])
        member = self.upsert(audience, existing["id"], body, query)
        return 200, self.member_view(audience, member)

    def _email(self, body: dict[str, Any]) -> str:
        email = body.get("email_address")
        if not isinstance(email, str) or not email.strip():
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "email_address", "message": "This value should not be blank."}],
            )
        email = email.strip()
        if not _EMAIL.match(email) or len(email) > 254:
            raise invalid(
                f"{email} looks fake or invalid, please enter a real email address.",
                [{"field": "email_address", "message": "looks fake or invalid"}],
            )
        return email

    def _merge_values(
        self,
        audience: Audience,
        given: Any,
        current: dict[str, Any] | None,
        validate: bool,
    ) -> dict[str, Any]:
        if given is not None and not isinstance(given, dict):
            raise invalid(
                "Your merge fields were invalid.",
                [{"field": "merge_fields", "message": "Merge fields must be an object."}],
            )
        values = dict(current or {tag: "" for tag in audience.merge_fields})
        for tag in audience.merge_fields:
            values.setdefault(tag, "")
        problems = []
        for tag, value in (given or {}).items():
            definition = audience.merge_fields.get(str(tag).upper())
            if definition is None:
                problems.append({"field": str(tag), "message": f"Merge field {tag} not found."})
                continue
            stored, message = merge_fields.validate_value(definition, value)
            if message is not None:
                if validate:
                    problems.append({"field": definition["tag"], "message": message})
                continue
            values[definition["tag"]] = stored
        if validate and current is None:
            for tag, definition in audience.merge_fields.items():
                if definition["required"] and values.get(tag) in ("", None):
                    problems.append({"field": tag, "message": "Please enter a value"})
        if problems:
            raise invalid("Your merge fields were invalid.", problems)
        return values

    def upsert(
        self,
        audience: Audience,
        member_hash: str,
        body: dict[str, Any],
        query: dict[str, str],
        *,
        creating_only: bool = False,
        source: str = "api",
    ) -> dict[str, Any]:
        """PUT semantics: create with `status_if_new`, or update (never with status_if_new)."""
        email = self._email(body)
        email_hash = subscriber_hash(email)
        if member_hash in audience.forgotten or email_hash in audience.forgotten:
            raise ApiError(
                400,
                "Forgotten Email Not Subscribed",
                f"{email} was permanently deleted and cannot be re-imported. The contact must "
                "re-subscribe to get back on the list.",
            )
        existing = audience.members.get(member_hash)
        if existing is None and email_hash != member_hash:
            raise invalid(
                "The subscriber hash in the path does not match the email address.",
                [{"field": "email_address", "message": "does not match the subscriber hash"}],
            )
        if existing is not None and email_hash != member_hash and email_hash in audience.members:
            raise ApiError(
                400,
                "Member Exists",
                f"{email} is already a list member. Use PUT to insert or update list members.",
            )
        for key in ("status", "status_if_new"):
            if key in body and body[key] not in STATUSES:
                raise invalid(
                    "The resource submitted could not be validated.",
                    [{"field": key, "message": f"must be one of {', '.join(STATUSES)}"}],
                )
        validate = not parse_bool(query.get("skip_merge_validation"))
        email_type = body.get("email_type", "html")
        if email_type not in ("html", "text"):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "email_type", "message": "must be html or text"}],
            )
        now = now_text()
        if existing is None or existing["status"] == "archived":
            status = body.get("status") or body.get("status_if_new")
            if not status:
                raise invalid(
                    "The resource submitted could not be validated.",
                    [{"field": "status_if_new", "message": "Required for a new member."}],
                )
            values = self._merge_values(audience, body.get("merge_fields"), None, validate)
            member = self._new_member(audience, email, member_hash, status, values, body, now)
            audience.members[member_hash] = member
            if status == "subscribed":
                self._notice(audience, "subscribe", source, member)
            return member
        if creating_only:
            raise ApiError(400, "Member Exists", f"{email} is already a list member.")
        member = existing
        status = body.get("status")
        if status and status != member["status"]:
            self._check_transition(audience, member, status)
        old_values = dict(member["merge_fields"])
        member["merge_fields"] = self._merge_values(
            audience, body.get("merge_fields"), member["merge_fields"], validate
        )
        for key in ("language", "vip", "interests", "location", "ip_signup", "ip_opt"):
            if key in body:
                member[key] = body[key]
        if "email_type" in body:
            member["email_type"] = email_type
        if email_hash != member_hash:
            old_email = member["email_address"]
            del audience.members[member_hash]
            member.update(email_address=email, id=email_hash)
            audience.members[email_hash] = member
            for segment in audience.segments.values():
                if member_hash in segment.members:
                    segment.members.discard(member_hash)
                    segment.members.add(email_hash)
            self._notice(
                audience,
                "upemail",
                source,
                member,
                extra={"new_id": email_hash, "new_email": email, "old_email": old_email},
            )
        if status and status != member["status"]:
            self._set_status(audience, member, status, source)
        elif member["merge_fields"] != old_values:
            self._notice(audience, "profile", source, member)
        member["last_changed"] = now
        return member

    def _new_member(
        self,
        audience: Audience,
        email: str,
        member_hash: str,
        status: str,
        values: dict[str, Any],
        body: dict[str, Any],
        now: str,
    ) -> dict[str, Any]:
        full_name = " ".join(
            str(values.get(tag, "")) for tag in ("FNAME", "LNAME") if values.get(tag)
        )
        return {
            "id": member_hash,
            "email_address": email,
            "unique_email_id": f"{self._random.getrandbits(40):010x}",
            "contact_id": f"{self._random.getrandbits(128):032x}",
            "full_name": full_name,
            "web_id": self._id(),
            "email_type": body.get("email_type", "html"),
            "status": status,
            "unsubscribe_reason": "",
            "consents_to_one_to_one_messaging": True,
            "merge_fields": values,
            "interests": dict(body.get("interests") or {}),
            # Shared read-only defaults: an update replaces these values, never mutates them.
            "stats": _STATS,
            "ip_signup": str(body.get("ip_signup", "")),
            # The description types this as a date-time (never ""): the API signup is now.
            "timestamp_signup": str(body.get("timestamp_signup") or now),
            "ip_opt": str(body.get("ip_opt", "")),
            "timestamp_opt": now if status == "subscribed" else "",
            "member_rating": 2,
            "last_changed": now,
            "language": str(body.get("language", "")),
            "vip": bool(body.get("vip", False)),
            "email_client": "",
            "location": _LOCATION,
            "source": "API - Generic",
            "list_id": audience.id,
        }

    def _check_transition(self, audience: Audience, member: dict[str, Any], status: str) -> None:
        current = member["status"]
        by = audience.unsubscribed_by.get(member["id"], "user")
        refused = (current == "cleaned" and status in ("subscribed", "pending")) or (
            current == "unsubscribed" and status == "subscribed" and by == "user"
        )
        if refused:
            raise ApiError(
                400,
                "Member In Compliance State",
                f"{member['email_address']} is in a compliance state due to unsubscribe, bounce, "
                "or compliance review and cannot be subscribed.",
            )

    def _set_status(
        self, audience: Audience, member: dict[str, Any], status: str, source: str
    ) -> None:
        member["status"] = status
        member["last_changed"] = now_text()
        if status == "unsubscribed":
            audience.unsubscribed_by[member["id"]] = "user" if source == "user" else source
            self._notice(audience, "unsubscribe", source, member, extra={"action": "unsub",
                                                                         "reason": "manual"})
        elif status == "subscribed":
            audience.unsubscribed_by.pop(member["id"], None)
            member["timestamp_opt"] = member["last_changed"]
            self._notice(audience, "subscribe", source, member)
        elif status == "cleaned":
            self._notice(audience, "cleaned", source, member, extra={"reason": "hard"})

    def archive_member(self, *, list_id: str, hash: str, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, hash)
        if member["status"] in ("cleaned", "pending", "archived"):
            raise ApiError(
                405,
                "Method Not Allowed",
                "This list member cannot be removed. Can not archive a contact that is bounced, "
                "pending or archived",
                headers={"Allow": "GET, PUT"},
            )
        member["status"] = "archived"
        member["last_changed"] = now_text()
        self._notice(audience, "unsubscribe", "api", member, extra={"action": "archive",
                                                                    "reason": "manual"})
        return 204, None

    def delete_permanent(self, *, list_id: str, hash: str, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, hash)
        self._notice(audience, "unsubscribe", "api", member, extra={"action": "delete",
                                                                    "reason": "manual"})
        del audience.members[member["id"]]
        audience.forgotten.add(member["id"])
        audience.events.pop(member["id"], None)
        audience.activity.pop(member["id"], None)
        for segment in audience.segments.values():
            segment.members.discard(member["id"])
        return 204, None

    # ---- batch subscribe ------------------------------------------------------------------

    def batch_members(self, *, list_id: str, query: dict[str, str], body: Any, **_: Any
                      ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        body = self._body(body)
        members = body.get("members")
        if not isinstance(members, list):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "members", "message": "This value should not be blank."}],
            )
        if len(members) > MAX_BATCH_MEMBERS:
            raise bad_request(
                f"You may only add or update {MAX_BATCH_MEMBERS} members per request; "
                f"this one has {len(members)}."
            )
        update_existing = bool(body.get("update_existing", False))
        sync_tags = bool(body.get("sync_tags", False))
        skip_duplicates = parse_bool(query.get("skip_duplicate_check"))
        created: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for entry in members:
            entry = entry if isinstance(entry, dict) else {}
            email = str(entry.get("email_address") or "")
            member_hash = subscriber_hash(email)
            if member_hash in seen:
                if not skip_duplicates:
                    errors.append(self._batch_error(email, "ERROR_GENERIC",
                                                    f"{email} was included more than once."))
                continue
            seen.add(member_hash)
            existing = audience.members.get(member_hash)
            live = existing is not None and existing["status"] != "archived"
            if live and not update_existing:
                errors.append(self._batch_error(email, "ERROR_CONTACT_EXISTS",
                                                f"{email} is already a list member."))
                continue
            try:
                member = self.upsert(audience, member_hash, entry, query)
            except ApiError as error:
                field_name = (error.errors or [{}])[0].get("field", "")
                message = (error.errors or [{}])[0].get("message", "")
                errors.append(self._batch_error(email, "ERROR_GENERIC", error.detail,
                                                field_name, message))
                continue
            tags = entry.get("tags")
            if isinstance(tags, list):
                wanted = {str(tag) for tag in tags}
                if sync_tags:
                    for current in self._tags_of(audience, member_hash):
                        if current["name"] not in wanted:
                            self._tag(audience, member_hash, current["name"], active=False)
                for tag in wanted:
                    self._tag(audience, member_hash, tag, active=True)
            (updated if live else created).append(self.member_view(audience, member))
        return 200, {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": links(f"/lists/{list_id}"),
        }

    @staticmethod
    def _batch_error(
        email: str, code: str, message: str, field_name: str = "", field_message: str = ""
    ) -> dict[str, Any]:
        return {
            "email_address": email,
            "error": message,
            "error_code": code,
            "field": field_name,
            "field_message": field_message,
        }

    # ---- tags and segments ----------------------------------------------------------------

    def _tag(self, audience: Audience, member_hash: str, name: str, *, active: bool) -> None:
        segment = audience.segment_named(name)
        if segment is None:
            if not active:
                return
            segment = Segment(self._id(), name, "static", audience.id)
            audience.segments[segment.id] = segment
        if active:
            segment.members.add(member_hash)
        else:
            segment.members.discard(member_hash)
        segment.updated_at = now_text()

    def get_member_tags(self, *, list_id: str, hash: str, query: dict[str, str], **_: Any
                        ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, hash)
        count, offset = page(query)
        tags = [
            {"id": s.id, "name": s.name, "date_added": s.updated_at}
            for s in audience.segments.values()
            if s.type == "static" and member["id"] in s.members
        ]
        return 200, {"tags": tags[offset : offset + count], "total_items": len(tags),
                     "_links": links(f"/lists/{list_id}/members/{member['id']}/tags")}

    def post_member_tags(self, *, list_id: str, hash: str, body: Any, **_: Any
                         ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, hash)
        tags = self._body(body).get("tags")
        if not isinstance(tags, list):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "tags", "message": "This value should not be blank."}],
            )
        for tag in tags:
            if not isinstance(tag, dict) or not tag.get("name") or tag.get("status") not in (
                "active",
                "inactive",
            ):
                raise invalid(
                    "The resource submitted could not be validated.",
                    [{"field": "tags", "message": "Each tag needs a name and a status of "
                      "active or inactive."}],
                )
        for tag in tags:
            self._tag(audience, member["id"], str(tag["name"]), active=tag["status"] == "active")
        return 204, None

    def tag_search(self, *, list_id: str, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        name = query.get("name", "").lower()
        tags = [
            {"id": s.id, "name": s.name}
            for s in audience.segments.values()
            if s.type == "static" and name in s.name.lower()
        ]
        return 200, {"tags": tags, "total_items": len(tags)}

    def _segment(self, audience: Audience, segment_id: str) -> Segment:
        segment = audience.segments.get(int(segment_id))
        if segment is None:
            raise not_found("segment")
        return segment

    def _hashes_on_list(self, audience: Audience, emails: Any, field_name: str) -> list[str]:
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": field_name, "message": "must be a list of email addresses"}],
            )
        return [
            subscriber_hash(email)
            for email in emails
            if subscriber_hash(email) in audience.members
        ]

    def get_segments(self, *, list_id: str, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        count, offset = page(query)
        segments = [
            s for s in audience.segments.values() if not query.get("type") or
            s.type == query["type"]
        ]
        return 200, {
            "segments": [s.view() for s in segments[offset : offset + count]],
            "list_id": list_id,
            "total_items": len(segments),
            "_links": links(f"/lists/{list_id}/segments"),
        }

    def post_segment(self, *, list_id: str, body: Any, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        body = self._body(body)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "name", "message": "This value should not be blank."}],
            )
        if "static_segment" in body and "options" in body:
            raise bad_request("A segment is either static (static_segment) or saved (options).")
        if audience.segment_named(name) is not None:
            raise bad_request(f"A segment or tag named {name!r} already exists.")
        if "options" in body:
            segment = Segment(self._id(), name, "saved", list_id, options=dict(body["options"]))
        else:
            segment = Segment(self._id(), name, "static", list_id)
            segment.members = set(
                self._hashes_on_list(audience, body.get("static_segment", []), "static_segment")
            )
        audience.segments[segment.id] = segment
        return 200, segment.view()

    def get_segment(self, *, list_id: str, segment_id: str, **_: Any) -> tuple[int, Any]:
        return 200, self._segment(self.audience(list_id), segment_id).view()

    def patch_segment(self, *, list_id: str, segment_id: str, body: Any, **_: Any
                      ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        segment = self._segment(audience, segment_id)
        body = self._body(body)
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "name", "message": "This value should not be blank."}],
            )
        segment.name = body["name"]
        if "static_segment" in body:
            segment.members = set(
                self._hashes_on_list(audience, body["static_segment"], "static_segment")
            )
        segment.updated_at = now_text()
        return 200, segment.view()

    def delete_segment(self, *, list_id: str, segment_id: str, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        del audience.segments[self._segment(audience, segment_id).id]
        return 204, None

    def batch_segment(self, *, list_id: str, segment_id: str, body: Any, **_: Any
                      ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        segment = self._segment(audience, segment_id)
        body = self._body(body)
        to_add = body.get("members_to_add", [])
        to_remove = body.get("members_to_remove", [])
        for name, emails in (("members_to_add", to_add), ("members_to_remove", to_remove)):
            if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
                raise invalid(
                    "The resource submitted could not be validated.",
                    [{"field": name, "message": "must be a list of email addresses"}],
                )
            if len(emails) > MAX_SEGMENT_DELTA:
                raise bad_request(
                    f"{name} has {len(emails)} entries; the limit is {MAX_SEGMENT_DELTA}."
                )
        added, removed, unknown = [], [], []
        for email in to_add:
            member_hash = subscriber_hash(email)
            member = audience.members.get(member_hash)
            if member is None:
                unknown.append(email)
                continue
            if member_hash not in segment.members:
                segment.members.add(member_hash)
            added.append(self.member_view(audience, member))
        for email in to_remove:
            member_hash = subscriber_hash(email)
            member = audience.members.get(member_hash)
            if member is None:
                unknown.append(email)
                continue
            segment.members.discard(member_hash)
            removed.append(self.member_view(audience, member))
        errors = (
            [{"email_addresses": unknown, "error": "Email addresses are not subscribed to the "
              "list."}] if unknown else []
        )
        segment.updated_at = now_text()
        return 200, {
            "members_added": added,
            "members_removed": removed,
            "errors": errors,
            "total_added": len(added),
            "total_removed": len(removed),
            "error_count": len(unknown),
            "_links": links(f"/lists/{list_id}/segments/{segment.id}"),
        }

    def get_segment_members(self, *, list_id: str, segment_id: str, query: dict[str, str],
                            **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        segment = self._segment(audience, segment_id)
        count, offset = page(query)
        hashes = sorted(segment.members)
        members = [audience.members[h] for h in hashes[offset : offset + count]
                   if h in audience.members]
        return 200, {
            "members": [self.member_view(audience, m) for m in members],
            "total_items": len(hashes),
            "_links": links(f"/lists/{list_id}/segments/{segment.id}/members"),
        }

    def remove_segment_member(self, *, list_id: str, segment_id: str, hash: str, **_: Any
                              ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        segment = self._segment(audience, segment_id)
        member = self._member(audience, hash)
        if member["id"] not in segment.members:
            raise not_found("segment member")
        segment.members.discard(member["id"])
        return 204, None

    # ---- merge fields ---------------------------------------------------------------------

    def get_merge_fields(self, *, list_id: str, query: dict[str, str], **_: Any
                         ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        count, offset = page(query)
        fields = list(audience.merge_fields.values())
        if query.get("type"):
            fields = [f for f in fields if f["type"] == query["type"]]
        return 200, {
            "merge_fields": fields[offset : offset + count],
            "list_id": list_id,
            "total_items": len(fields),
            "_links": links(f"/lists/{list_id}/merge-fields"),
        }

    def post_merge_field(self, *, list_id: str, body: Any, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        body = dict(self._body(body))
        merge_id = self._id()
        if not body.get("tag") and isinstance(body.get("name"), str):
            body["tag"] = merge_fields.generated_tag(body["name"], set(audience.merge_fields))
        defined = merge_fields.definition(list_id, merge_id, body, len(audience.merge_fields) + 1)
        if defined["tag"] in audience.merge_fields:
            raise bad_request(f"A Merge Field with the tag \"{defined['tag']}\" already exists "
                              "for this list.")
        audience.merge_fields[defined["tag"]] = defined
        for member in audience.members.values():
            member["merge_fields"].setdefault(defined["tag"], "")
        return 200, defined

    def _merge_field(self, audience: Audience, merge_id: str) -> dict[str, Any]:
        for defined in audience.merge_fields.values():
            if defined["merge_id"] == int(merge_id):
                return defined
        raise not_found("merge field")

    def get_merge_field(self, *, list_id: str, merge_id: str, **_: Any) -> tuple[int, Any]:
        return 200, self._merge_field(self.audience(list_id), merge_id)

    def patch_merge_field(self, *, list_id: str, merge_id: str, body: Any, **_: Any
                          ) -> tuple[int, Any]:
        defined = self._merge_field(self.audience(list_id), merge_id)
        body = self._body(body)
        for key in ("name", "required", "default_value", "public", "display_order", "help_text"):
            if key in body:
                defined[key] = body[key]
        if "options" in body:
            defined["options"] = {**defined["options"], **dict(body["options"])}
        return 200, defined

    def delete_merge_field(self, *, list_id: str, merge_id: str, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        defined = self._merge_field(audience, merge_id)
        del audience.merge_fields[defined["tag"]]
        for member in audience.members.values():
            member["merge_fields"].pop(defined["tag"], None)
        return 204, None

    # ---- events and activity --------------------------------------------------------------

    def post_member_event(self, *, list_id: str, hash: str, body: Any, **_: Any
                          ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, hash)
        body = self._body(body)
        name = body.get("name")
        if not isinstance(name, str) or not _EVENT_NAME.match(name):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "name", "message": "Must be 2-30 characters: letters, digits, _ "
                  "and -."}],
            )
        properties = body.get("properties") or {}
        if not isinstance(properties, dict) or not all(
            isinstance(v, str) for v in properties.values()
        ):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "properties", "message": "Property values must be strings."}],
            )
        occurred_at = body.get("occurred_at") or now_text()
        audience.events.setdefault(member["id"], []).append(
            {"name": name, "occurred_at": occurred_at, "properties": properties}
        )
        return 204, None

    def get_member_events(self, *, list_id: str, hash: str, query: dict[str, str], **_: Any
                          ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, hash)
        count, offset = page(query)
        events = list(reversed(audience.events.get(member["id"], [])))
        return 200, {
            "events": events[offset : offset + count],
            "total_items": len(events),
            "_links": links(f"/lists/{list_id}/members/{member['id']}/events"),
        }

    def get_member_activity(self, *, list_id: str, hash: str, query: dict[str, str], **_: Any
                            ) -> tuple[int, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, hash)
        actions = {a for a in query.get("action", "").split(",") if a}
        activity = [
            {key: item[key] for key in ("action", "timestamp", "url", "type", "campaign_id",
                                        "title", "parent_campaign")}
            for item in reversed(audience.activity.get(member["id"], []))
            if not actions or item["action"] in actions
        ][:50]
        return 200, {
            "activity": activity,
            "email_id": member["id"],
            "list_id": list_id,
            "total_items": len(activity),
            "_links": links(f"/lists/{list_id}/members/{member['id']}/activity"),
        }

    # ---- campaigns and reports ------------------------------------------------------------

    def send_campaign(self, list_id: str, subject: str) -> dict[str, Any]:
        audience = self.audience(list_id)
        campaign_id = secrets.token_hex(5)
        campaign = {
            "id": campaign_id,
            "web_id": self._id(),
            "type": "regular",
            "create_time": now_text(),
            "status": "sent",
            "emails_sent": sum(1 for m in audience.members.values()
                               if m["status"] == "subscribed"),
            "send_time": now_text(),
            "content_type": "template",
            "recipients": {"list_id": list_id, "list_is_active": True, "list_name": audience.name},
            "settings": {"subject_line": subject, "title": subject},
            "_links": links(f"/campaigns/{campaign_id}"),
        }
        self.campaigns[campaign_id] = campaign
        self.notices.append(Notice(list_id, "campaign", "admin", {
            "id": campaign_id, "subject": subject, "status": "sent", "reason": "",
            "list_id": list_id,
        }))
        return campaign

    def record_activity(
        self, list_id: str, email: str, campaign_id: str, action: str, url: str = ""
    ) -> dict[str, Any]:
        audience = self.audience(list_id)
        member = self._member(audience, subscriber_hash(email))
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise not_found("campaign")
        if action not in ("open", "click", "bounce"):
            raise bad_request("action must be open, click or bounce")
        item = {
            "action": action,
            "timestamp": now_text(),
            "url": url,
            "type": "",
            "campaign_id": campaign_id,
            "title": campaign["settings"]["title"],
            "parent_campaign": "",
            "ip": "127.0.0.1",
        }
        audience.activity.setdefault(member["id"], []).append(item)
        return item

    def get_campaigns(self, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        count, offset = page(query)
        campaigns = list(self.campaigns.values())
        if query.get("list_id"):
            campaigns = [c for c in campaigns if c["recipients"]["list_id"] == query["list_id"]]
        if query.get("status"):
            campaigns = [c for c in campaigns if c["status"] == query["status"]]
        if query.get("since_send_time"):
            campaigns = [c for c in campaigns if c["send_time"] >= query["since_send_time"]]
        return 200, {
            "campaigns": campaigns[offset : offset + count],
            "total_items": len(campaigns),
            "_links": links("/campaigns"),
        }

    def get_campaign(self, *, campaign_id: str, **_: Any) -> tuple[int, Any]:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise not_found("campaign")
        return 200, campaign

    def email_activity(self, *, campaign_id: str, query: dict[str, str], **_: Any
                       ) -> tuple[int, Any]:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise not_found("campaign")
        audience = self.audience(campaign["recipients"]["list_id"])
        since = query.get("since", "")
        count, offset = page(query)
        emails = []
        for member_hash, items in audience.activity.items():
            member = audience.members.get(member_hash)
            mine = [
                {"action": i["action"], "type": i["type"], "timestamp": i["timestamp"],
                 "url": i["url"], "ip": i["ip"]}
                for i in items
                if i["campaign_id"] == campaign_id and (not since or i["timestamp"] > since)
            ]
            if member is not None and mine:
                emails.append({
                    "campaign_id": campaign_id,
                    "list_id": audience.id,
                    "list_is_active": True,
                    "email_id": member_hash,
                    "email_address": member["email_address"],
                    "activity": mine,
                })
        return 200, {
            "emails": emails[offset : offset + count],
            "campaign_id": campaign_id,
            "total_items": len(emails),
            "_links": links(f"/reports/{campaign_id}/email-activity"),
        }

    # ---- webhooks -------------------------------------------------------------------------

    def get_webhooks(self, *, list_id: str, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        hooks = [self._webhook_view(h) for h in audience.webhooks.values()]
        return 200, {"webhooks": hooks, "list_id": list_id, "total_items": len(hooks),
                     "_links": links(f"/lists/{list_id}/webhooks")}

    @staticmethod
    def _webhook_view(hook: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in hook.items() if key != "signing_secret"}

    def post_webhook(self, *, list_id: str, body: Any, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        body = self._body(body)
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "url", "message": "Please enter a valid URL."}],
            )
        events = {name: bool((body.get("events") or {}).get(name, True))
                  for name in WEBHOOK_EVENTS}
        sources = {name: bool((body.get("sources") or {}).get(name, name != "api"))
                   for name in ("user", "admin", "api")}
        webhook_id = secrets.token_hex(5)
        hook = {
            "id": webhook_id,
            "url": url,
            "events": events,
            "sources": sources,
            "list_id": list_id,
            "_links": links(f"/lists/{list_id}/webhooks/{webhook_id}"),
            "signing_secret": secrets.token_hex(32),
        }
        audience.webhooks[webhook_id] = hook
        # The signing secret is shown once, in the create reply only.
        return 200, dict(hook)

    def get_webhook(self, *, list_id: str, webhook_id: str, **_: Any) -> tuple[int, Any]:
        hook = self.audience(list_id).webhooks.get(webhook_id)
        if hook is None:
            raise not_found("webhook")
        return 200, self._webhook_view(hook)

    def delete_webhook(self, *, list_id: str, webhook_id: str, **_: Any) -> tuple[int, Any]:
        audience = self.audience(list_id)
        if audience.webhooks.pop(webhook_id, None) is None:
            raise not_found("webhook")
        return 204, None

    # ---- webhook notices ------------------------------------------------------------------

    def _notice(
        self,
        audience: Audience,
        kind: str,
        source: str,
        member: dict[str, Any],
        *,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if not audience.webhooks:
            return
        if kind == "upemail":
            data: dict[str, Any] = {"list_id": audience.id, **(extra or {})}
        elif kind == "cleaned":
            data = {"list_id": audience.id, "campaign_id": "", "email": member["email_address"],
                    **(extra or {})}
        else:
            data = {
                "id": member["id"],
                "list_id": audience.id,
                "email": member["email_address"],
                "email_type": member["email_type"],
                "web_id": str(member["web_id"]),
                "ip_opt": member["ip_opt"],
                "ip_signup": member["ip_signup"],
                "merges": {"EMAIL": member["email_address"], **member["merge_fields"]},
                **(extra or {}),
            }
            if kind == "unsubscribe":
                data.setdefault("campaign_id", "")
        self.notices.append(Notice(audience.id, kind, source, data))

    def simulate(self, list_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A change made by the person (`source` user) or in the Mailchimp app (admin)."""
        audience = self.audience(list_id)
        kind = body.get("type")
        source = body.get("source", "user")
        if source not in ("user", "admin"):
            raise bad_request("source must be user or admin")
        if kind == "campaign":
            return self.send_campaign(list_id, str(body.get("subject", "Sandbox campaign")))
        email = str(body.get("email", ""))
        member = self._member(audience, subscriber_hash(email))
        if kind == "unsubscribe":
            self._set_status(audience, member, "unsubscribed", source)
        elif kind == "cleaned":
            member["status"] = "cleaned"
            member["last_changed"] = now_text()
            self._notice(audience, "cleaned", source, member,
                         extra={"reason": body.get("reason", "hard")})
        elif kind == "subscribe":
            audience.unsubscribed_by.pop(member["id"], None)
            self._set_status(audience, member, "subscribed", source)
        elif kind == "profile":
            member["merge_fields"] = self._merge_values(
                audience, body.get("merge_fields") or {}, member["merge_fields"], True
            )
            member["last_changed"] = now_text()
            self._notice(audience, "profile", source, member)
        elif kind == "upemail":
            self.upsert(
                audience, member["id"], {"email_address": str(body.get("new_email", ""))}, {},
                source=source,
            )
        else:
            raise bad_request(f"unknown simulated change {kind!r}")
        return self.member_view(audience, audience.members.get(member["id"], member))


def _route_table() -> list[tuple[str, re.Pattern[str], Handler]]:
    """Every endpoint by method and path pattern, with the function that serves it.

    The table holds the class's functions rather than one account's bound methods: those
    would tie each account into a reference cycle, so that a reset account (a whole audience)
    stayed in memory until the next full cyclic collection.
    """
    hash_ = r"(?P<hash>[^/]+)"
    list_ = r"/lists/(?P<list_id>[^/]+)"
    member = rf"{list_}/members/{hash_}"
    segment = rf"{list_}/segments/(?P<segment_id>\d+)"
    table: list[tuple[str, str, Handler]] = [
        ("GET", r"/ping", Account.ping),
        ("GET", r"/lists", Account.get_lists),
        ("POST", r"/lists", Account.post_list),
        ("GET", rf"{list_}", Account.get_list),
        ("POST", rf"{list_}", Account.batch_members),
        ("GET", rf"{list_}/members", Account.get_members),
        ("POST", rf"{list_}/members", Account.post_member),
        ("GET", member, Account.get_member),
        ("PUT", member, Account.put_member),
        ("PATCH", member, Account.patch_member),
        ("DELETE", member, Account.archive_member),
        ("POST", rf"{member}/actions/delete-permanent", Account.delete_permanent),
        ("GET", rf"{member}/tags", Account.get_member_tags),
        ("POST", rf"{member}/tags", Account.post_member_tags),
        ("GET", rf"{member}/events", Account.get_member_events),
        ("POST", rf"{member}/events", Account.post_member_event),
        ("GET", rf"{member}/activity", Account.get_member_activity),
        ("GET", rf"{list_}/tag-search", Account.tag_search),
        ("GET", rf"{list_}/merge-fields", Account.get_merge_fields),
        ("POST", rf"{list_}/merge-fields", Account.post_merge_field),
        ("GET", rf"{list_}/merge-fields/(?P<merge_id>\d+)", Account.get_merge_field),
        ("PATCH", rf"{list_}/merge-fields/(?P<merge_id>\d+)", Account.patch_merge_field),
        ("DELETE", rf"{list_}/merge-fields/(?P<merge_id>\d+)", Account.delete_merge_field),
        ("GET", rf"{list_}/segments", Account.get_segments),
        ("POST", rf"{list_}/segments", Account.post_segment),
        ("GET", segment, Account.get_segment),
        ("PATCH", segment, Account.patch_segment),
        ("DELETE", segment, Account.delete_segment),
        ("POST", segment, Account.batch_segment),
        ("GET", rf"{segment}/members", Account.get_segment_members),
        ("DELETE", rf"{segment}/members/{hash_}", Account.remove_segment_member),
        ("GET", rf"{list_}/webhooks", Account.get_webhooks),
        ("POST", rf"{list_}/webhooks", Account.post_webhook),
        ("GET", rf"{list_}/webhooks/(?P<webhook_id>[^/]+)", Account.get_webhook),
        ("DELETE", rf"{list_}/webhooks/(?P<webhook_id>[^/]+)", Account.delete_webhook),
        ("GET", r"/campaigns", Account.get_campaigns),
        ("GET", r"/campaigns/(?P<campaign_id>[^/]+)", Account.get_campaign),
        ("GET", r"/reports/(?P<campaign_id>[^/]+)/email-activity", Account.email_activity),
    ]
    return [(method, re.compile(f"^{path}/?$"), fn) for method, path, fn in table]


_ROUTES = _route_table()
