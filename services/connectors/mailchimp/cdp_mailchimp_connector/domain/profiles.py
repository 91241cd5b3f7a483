"""Turning profiles mapped into Mailchimp's shape into member upserts, or naming what is wrong.

Every check runs before anything is sent, so a request with a bad profile writes nothing.
Descriptions never quote the value (it may be personal data), only what is wrong with it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from cdp_errors import FieldViolation
from cdp_mailchimp_connector.domain.model import (
    MEMBER_STATUSES,
    MERGE_TAG_MAX,
    MemberUpsert,
    TagChange,
)

EMAIL = re.compile(r"^[A-Za-z0-9._%+\-']+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
MERGE_TAG = re.compile(rf"^[A-Z][A-Z0-9_]{{0,{MERGE_TAG_MAX - 1}}}$")
MAX_TAG_NAME = 100
# Member fields a payload may carry besides merge_fields, tags and the statuses.
PASSTHROUGH = {
    "email_type": str,
    "language": str,
    "vip": bool,
    "interests": dict,
    "location": dict,
    "marketing_permissions": list,
    "ip_signup": str,
    "ip_opt": str,
    "timestamp_signup": str,
    "timestamp_opt": str,
}


@dataclass(frozen=True)
class RawProfile:
    customer_id: str
    email: str
    payload: dict[str, Any]


def _email_problem(email: str) -> str | None:
    """What is wrong with an already stripped email, or None."""
    if not email:
        return "is required"
    if len(email) > 254:
        return f"is {len(email)} characters long; the limit is 254"
    if not EMAIL.match(email):
        return "is not a valid email address"
    return None


def check_email(email: str, field: str) -> FieldViolation | None:
    problem = _email_problem(email.strip())
    return FieldViolation(field, problem) if problem is not None else None


@functools.lru_cache(maxsize=1024)
def _is_merge_tag(tag: str) -> bool:
    # A sync names the same few tags in every profile: the pattern runs once per tag.
    return MERGE_TAG.match(tag) is not None


def _tags(raw: Any, field: str, violations: list[FieldViolation]) -> tuple[TagChange, ...]:
    if not isinstance(raw, list):
        violations.append(FieldViolation(field, "must be a list of tags"))
        return ()
    tags: list[TagChange] = []
    for index, tag in enumerate(raw):
        path = f"{field}[{index}]"
        if isinstance(tag, str):
            tag = {"name": tag, "status": "active"}
        if not isinstance(tag, dict):
            violations.append(FieldViolation(path, "must be a tag name or {name, status}"))
            continue
        name = tag.get("name")
        status = tag.get("status", "active")
        if not isinstance(name, str) or not name.strip():
            violations.append(FieldViolation(f"{path}.name", "is required"))
        elif len(name) > MAX_TAG_NAME:
            violations.append(
                FieldViolation(f"{path}.name", f"is {len(name)} characters long; the limit is "
                               f"{MAX_TAG_NAME}")
            )
        elif status not in ("active", "inactive"):
            violations.append(FieldViolation(f"{path}.status", "must be active or inactive"))
        else:
            tags.append(TagChange(name.strip(), status == "active"))
    return tuple(tags)


def _merge_fields(
    raw: Any, field: str, known_tags: Collection[str] | None, violations: list[FieldViolation]
) -> dict[str, Any]:
    if not isinstance(raw, dict):
        violations.append(FieldViolation(field, "must be an object keyed by merge tag"))
        return {}
    # The common case, every tag known and every value a scalar or an object, takes one pass
    # and builds no field paths; paths are only spelled out for what is wrong.
    for tag, value in raw.items():
        if (
            not isinstance(tag, str)
            or not _is_merge_tag(tag)
            or (known_tags is not None and tag not in known_tags)
            or isinstance(value, list)
        ):
            break
    else:
        return dict(raw)
    values: dict[str, Any] = {}
    for tag, value in raw.items():
        path = f"{field}.{tag}"
        if not MERGE_TAG.match(str(tag)):
            violations.append(
                FieldViolation(path, f"is not a merge tag (upper case, at most {MERGE_TAG_MAX} "
                               "characters, starting with a letter)")
            )
        elif known_tags is not None and tag not in known_tags:
            violations.append(
                FieldViolation(path, "is not defined on the audience; provision it with "
                               "EnsureFields first")
            )
        elif isinstance(value, list):
            violations.append(FieldViolation(path, "must be a string, a number or an object"))
        else:
            values[str(tag)] = value
    return values


def to_upserts(
    profiles: Sequence[RawProfile],
    *,
    double_optin: bool,
    known_tags: Collection[str] | None,
    prefix: str = "profiles",
) -> tuple[list[MemberUpsert], list[FieldViolation]]:
    """Member upserts for `profiles`, and every violation found (field paths per profile).

    `status_if_new` is `pending` on a double opt-in audience (Mailchimp then sends the
    confirmation email) and `subscribed` otherwise, unless the payload asks for
    `transactional` (or another status) itself. An explicit `status` is passed through: it
    overwrites the member's status and is how an unsubscribe is sent.

    This runs on the event loop for every profile of a push (tens of thousands a second), so
    field paths are built only for violations.
    """
    upserts: list[MemberUpsert] = []
    violations: list[FieldViolation] = []
    seen: dict[str, int] = {}
    default_status = "pending" if double_optin else "subscribed"
    for index, profile in enumerate(profiles):
        found: list[FieldViolation] = []
        customer_id = profile.customer_id.strip()
        if not customer_id:
            found.append(FieldViolation(f"{prefix}[{index}].customer_id", "is required"))
        email = profile.email.strip()
        email_problem = _email_problem(email)
        if email_problem is not None:
            found.append(FieldViolation(f"{prefix}[{index}].email", email_problem))
        else:
            first = seen.setdefault(email.lower(), index)
            if first != index:
                found.append(FieldViolation(f"{prefix}[{index}].email",
                                            f"is the same email as {prefix}[{first}]"))
        merge_values: dict[str, Any] = {}
        tags: tuple[TagChange, ...] = ()
        extra: dict[str, Any] = {}
        status: str | None = None
        status_if_new = default_status
        for key, value in profile.payload.items():
            if key == "merge_fields":
                merge_values = _merge_fields(
                    value, f"{prefix}[{index}].payload.merge_fields", known_tags, found
                )
            elif key == "tags":
                tags = _tags(value, f"{prefix}[{index}].payload.tags", found)
            elif key in ("status", "status_if_new"):
                if value not in MEMBER_STATUSES:
                    found.append(FieldViolation(f"{prefix}[{index}].payload.{key}",
                                                f"must be one of {', '.join(MEMBER_STATUSES)}"))
                elif key == "status":
                    status = str(value)
                elif not (double_optin and value == "subscribed"):
                    status_if_new = str(value)
            elif key in PASSTHROUGH:
                expected = PASSTHROUGH[key]
                if not isinstance(value, expected):
                    found.append(FieldViolation(f"{prefix}[{index}].payload.{key}",
                                                f"must be a {expected.__name__}"))
                elif key == "email_type" and value not in ("html", "text"):
                    found.append(FieldViolation(f"{prefix}[{index}].payload.{key}",
                                                "must be html or text"))
                else:
                    extra[key] = value
            else:
                found.append(FieldViolation(f"{prefix}[{index}].payload.{key}",
                                            "is not a Mailchimp member field"))
        if found:
            violations.extend(found)
            continue
        upserts.append(
            MemberUpsert(
                customer_id=customer_id,
                email=email,
                status_if_new=status_if_new,
                status=status,
                merge_fields=merge_values,
                tags=tags,
                extra=extra,
            )
        )
    return upserts, violations
