"""Normalising and validating the identifiers a customer can be matched on.

Matching is deterministic on exact normalised values, tried in `MATCH_PRIORITY` order:
the authoritative user id first, then email, phone, platform ids, device ids, anonymous ids
and cookies. Session ids are accepted but never matched on: a session is too short-lived
and too easily shared to identify a person.

Email: trimmed and lower-cased as a whole. Plus-addressing (`ada+news@`) and dots in the
local part (`a.da@`) are kept: on most providers they are separate mailboxes, and merging
two people because one provider ignores dots would be the worse error.

Phone: parsed with `phonenumbers` (the default region applies to numbers without a country
code) and stored as E.164; a number that is not valid for its region is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import phonenumbers

from cdp_errors import FieldViolation

MAX_IDENTIFIER_LENGTH = 255
MAX_EMAIL_LENGTH = 254
MAX_PLATFORM_IDS = 20
MAX_COOKIES = 20


class IdentityKind(StrEnum):
    USER_ID = "user_id"
    EMAIL = "email"
    PHONE = "phone"
    PLATFORM = "platform"
    DEVICE_ID = "device_id"
    ANONYMOUS_ID = "anonymous_id"
    COOKIE = "cookie"


MATCH_PRIORITY: tuple[IdentityKind, ...] = (
    IdentityKind.USER_ID,
    IdentityKind.EMAIL,
    IdentityKind.PHONE,
    IdentityKind.PLATFORM,
    IdentityKind.DEVICE_ID,
    IdentityKind.ANONYMOUS_ID,
    IdentityKind.COOKIE,
)


@dataclass(frozen=True, order=True)
class IdentityKey:
    """One normalised identifier. `platform` is set for platform ids, empty otherwise."""

    kind: IdentityKind
    value: str
    platform: str = ""

    @property
    def priority(self) -> int:
        return MATCH_PRIORITY.index(self.kind)


@dataclass(frozen=True)
class RawPlatformId:
    platform: str
    id: str


@dataclass(frozen=True)
class RawIdentifiers:
    """Identifiers as a caller sent them, before normalisation."""

    user_id: str = ""
    email: str = ""
    phone: str = ""
    anonymous_id: str = ""
    session_id: str = ""
    device_id: str = ""
    platform_ids: tuple[RawPlatformId, ...] = ()
    cookies: tuple[str, ...] = ()


# Deliberately simple: one @, a local part of allowed characters, a dotted domain. Full
# RFC 5322 admits addresses no platform accepts; this admits what mail providers do.
_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~\-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)


def normalize_email(raw: str, field: str) -> tuple[str | None, FieldViolation | None]:
    email = raw.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH:
        return None, FieldViolation(
            field, f"is {len(email)} characters long; the limit is {MAX_EMAIL_LENGTH}"
        )
    local = email.split("@", 1)[0]
    if not _EMAIL.match(email) or len(local) > 64:
        return None, FieldViolation(field, "is not a valid email address")
    return email, None


def normalize_phone(
    raw: str, field: str, default_region: str
) -> tuple[str | None, FieldViolation | None]:
    if len(raw) > 64:
        return None, FieldViolation(field, f"is {len(raw)} characters long; the limit is 64")
    try:
        parsed = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None, FieldViolation(field, "is not a phone number")
    if not phonenumbers.is_valid_number(parsed):
        return None, FieldViolation(
            field, f"is not a valid phone number (default region {default_region})"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), None


def _plain(raw: str, field: str) -> tuple[str | None, FieldViolation | None]:
    value = raw.strip()
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return None, FieldViolation(
            field, f"is {len(value)} characters long; the limit is {MAX_IDENTIFIER_LENGTH}"
        )
    if any(ord(ch) < 32 for ch in value):
        return None, FieldViolation(field, "contains control characters")
    return value, None


@dataclass(frozen=True)
class BlockedValues:
    """Placeholder values that never identify anyone, compared after normalisation.

    Sources send these when they know nothing (`null`, `anonymous`), in test fixtures
    (`test@test.com`) or as unset numeric ids (`0`, `00000000-0000-...`). Matching on them
    would merge every such customer into one, the classic over-merge.
    """

    values: frozenset[str]
    patterns: tuple[re.Pattern[str], ...] = field(default=())

    @classmethod
    def of(cls, values: Iterable[str], patterns: Iterable[str] = ()) -> BlockedValues:
        return cls(
            frozenset(v.strip().lower() for v in values if v.strip()),
            tuple(re.compile(p) for p in patterns),
        )

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return value in self.values or any(p.fullmatch(value) for p in self.patterns)


DEFAULT_BLOCKED_VALUES = (
    "null", "none", "nil", "undefined", "anonymous", "unknown", "n/a", "na", "-1",
    "[object object]",
    "test@test.com", "test@example.com", "noemail@noemail.com", "none@none.com",
    "no-reply@example.com", "email@example.com", "user@example.com",
)
# All zeros (with any dashes), as unset UUIDs and numeric ids look; an all-zero phone number.
DEFAULT_BLOCKED_PATTERNS = (r"[0\-]+", r"\+0+")

NO_BLOCKED_VALUES = BlockedValues.of(())


@dataclass(frozen=True)
class NormalizedIdentifiers:
    keys: tuple[IdentityKey, ...]
    session_id: str = ""

    def of_kind(self, kind: IdentityKind) -> list[IdentityKey]:
        return [key for key in self.keys if key.kind is kind]


def normalize_identifiers(
    raw: RawIdentifiers,
    *,
    default_region: str,
    known_platforms: frozenset[str],
    blocked: BlockedValues = NO_BLOCKED_VALUES,
    field: str = "identifiers",
) -> tuple[NormalizedIdentifiers, list[FieldViolation]]:
    """Normalised keys (sorted by match priority) and every violation found.

    Blocked placeholder values are dropped silently (they never match anything); a request
    left with nothing but blocked values is rejected.
    """
    keys: list[IdentityKey] = []
    violations: list[FieldViolation] = []
    blocked_seen = False

    def add(
        kind: IdentityKind, result: tuple[str | None, FieldViolation | None], platform: str = ""
    ) -> None:
        nonlocal blocked_seen
        value, violation = result
        if violation is not None:
            violations.append(violation)
        elif value and value.lower() in blocked:
            blocked_seen = True
        elif value:
            keys.append(IdentityKey(kind, value, platform))

    if raw.user_id.strip():
        add(IdentityKind.USER_ID, _plain(raw.user_id, f"{field}.user_id"))
    if raw.email.strip():
        add(IdentityKind.EMAIL, normalize_email(raw.email, f"{field}.email"))
    if raw.phone.strip():
        add(IdentityKind.PHONE, normalize_phone(raw.phone, f"{field}.phone", default_region))
    if raw.device_id.strip():
        add(IdentityKind.DEVICE_ID, _plain(raw.device_id, f"{field}.device_id"))
    if raw.anonymous_id.strip():
        add(IdentityKind.ANONYMOUS_ID, _plain(raw.anonymous_id, f"{field}.anonymous_id"))
    if len(raw.platform_ids) > MAX_PLATFORM_IDS:
        violations.append(
            FieldViolation(
                f"{field}.platform_ids",
                f"has {len(raw.platform_ids)} entries; the limit is {MAX_PLATFORM_IDS}",
            )
        )
    else:
        for index, platform_id in enumerate(raw.platform_ids):
            path = f"{field}.platform_ids[{index}]"
            platform = platform_id.platform.strip().lower()
            if platform not in known_platforms:
                violations.append(
                    FieldViolation(
                        f"{path}.platform",
                        f"unknown platform {platform_id.platform[:40]!r}; known: "
                        + ", ".join(sorted(known_platforms)),
                    )
                )
                continue
            if not platform_id.id.strip():
                violations.append(FieldViolation(f"{path}.id", "must not be empty"))
                continue
            add(IdentityKind.PLATFORM, _plain(platform_id.id, f"{path}.id"), platform)
    if len(raw.cookies) > MAX_COOKIES:
        violations.append(
            FieldViolation(
                f"{field}.cookies", f"has {len(raw.cookies)} entries; the limit is {MAX_COOKIES}"
            )
        )
    else:
        for index, cookie in enumerate(raw.cookies):
            if cookie.strip():
                add(IdentityKind.COOKIE, _plain(cookie, f"{field}.cookies[{index}]"))
    session_id, session_violation = _plain(raw.session_id, f"{field}.session_id")
    if session_violation is not None:
        violations.append(session_violation)
    if not keys and not violations:
        violations.append(
            FieldViolation(
                field,
                "every identifier given is a blocked placeholder value (such as null, "
                "anonymous or an all-zero id), which never identifies anyone"
                if blocked_seen
                else "at least one identifier is required (user_id, email, phone, "
                "platform_ids, device_id, anonymous_id or cookies)",
            )
        )
    unique = sorted(set(keys), key=lambda key: (key.priority, key.platform, key.value))
    return NormalizedIdentifiers(tuple(unique), session_id or ""), violations
