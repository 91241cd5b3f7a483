"""What each target platform accepts as a record path.

Most platforms take any dot path. Mailchimp's member record has a fixed shape: top-level
member fields, `merge_fields.<TAG>` where a merge tag is at most 10 characters (upper-case
letters, digits and `_`, starting with a letter), `interests.<id>` and `location.latitude` /
`location.longitude`; `tags` must be a list of `{"name", "status"}` objects, so a mapping
writing `tags` has to end with the `mailchimp_tags` transform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdp_mappings.model import FieldType

MAILCHIMP_TAG_MAX = 10
_MERGE_TAG = re.compile(r"^[A-Z][A-Z0-9_]*$")
_MAILCHIMP_MEMBER_FIELDS = frozenset(
    {"email_address", "email_type", "status", "status_if_new", "language", "vip", "tags"}
)
_MAILCHIMP_MERGE_TYPES = frozenset(
    {FieldType.TEXT, FieldType.NUMBER, FieldType.DATE, FieldType.PHONE, FieldType.ADDRESS}
)


@dataclass(frozen=True)
class TargetRules:
    """The record shape one platform accepts."""

    platform: str
    # Where the record's email goes, for platforms keyed by email (sent beside the payload).
    email_path: tuple[str, ...] = ()

    def check_path(self, path: tuple[str, ...], transforms: tuple[str, ...]) -> list[str]:
        """Problems with writing to `path` (already a well-formed dot path) on this platform."""
        return []

    def field_tag(self, path: tuple[str, ...]) -> str | None:
        """The platform field `path` writes to when such fields must be created first."""
        return None

    def check_type(self, field_type: FieldType) -> list[str]:
        return []


class MailchimpRules(TargetRules):
    def check_path(self, path: tuple[str, ...], transforms: tuple[str, ...]) -> list[str]:
        head = path[0]
        if head == "merge_fields":
            if len(path) != 2:
                return [f"to: {'.'.join(path)!r} must be merge_fields.<TAG>: merge fields are flat"]
            tag = path[1]
            problems = []
            if len(tag) > MAILCHIMP_TAG_MAX:
                problems.append(
                    f"to: merge tag {tag!r} has {len(tag)} characters; Mailchimp allows at "
                    f"most {MAILCHIMP_TAG_MAX}"
                )
            if not _MERGE_TAG.match(tag):
                problems.append(
                    f"to: merge tag {tag!r} must be upper-case letters, digits and '_', "
                    "starting with a letter"
                )
            return problems
        if head in ("interests", "location"):
            if head == "location" and (len(path) != 2 or path[1] not in ("latitude", "longitude")):
                return [f"to: {'.'.join(path)!r}: location takes only latitude and longitude"]
            if len(path) != 2:
                return [f"to: {'.'.join(path)!r} must be {head}.<key>"]
            return []
        if head in _MAILCHIMP_MEMBER_FIELDS and len(path) == 1:
            if head == "tags" and (not transforms or transforms[-1] != "mailchimp_tags"):
                return [
                    "to: tags must be a list of {name, status} objects: end the entry with "
                    "transform: mailchimp_tags"
                ]
            return []
        known = ", ".join(sorted(_MAILCHIMP_MEMBER_FIELDS))
        return [
            f"to: {'.'.join(path)!r} is not a Mailchimp member field (expected one of {known}, "
            "merge_fields.<TAG>, interests.<id>, location.latitude|longitude)"
        ]

    def field_tag(self, path: tuple[str, ...]) -> str | None:
        return path[1] if len(path) == 2 and path[0] == "merge_fields" else None

    def check_type(self, field_type: FieldType) -> list[str]:
        if field_type not in _MAILCHIMP_MERGE_TYPES:
            names = ", ".join(sorted(t.value for t in _MAILCHIMP_MERGE_TYPES))
            return [f"type: Mailchimp merge fields have no {field_type.value} type ({names})"]
        return []


def rules_for(platform: str) -> TargetRules:
    if platform == "mailchimp":
        return MailchimpRules(platform, email_path=("email_address",))
    return TargetRules(platform)
