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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

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


_PRIORITY = {kind: rank for rank, kind in enumerate(MATCH_PRIORITY)}
# `member.value` goes through an enum descriptor; hot loops look the name up here instead.
KIND_NAME: dict[IdentityKind, str] = {kind: kind.value for kind in IdentityKind}


class IdentityKey(NamedTuple):
    """One normalised identifier. `platform` is set for platform ids, empty otherwise.

    A named tuple rather than a dataclass: keys are hashed and compared by the thousand per
    batch, and tuple hashing runs in C.
    """

    kind: IdentityKind
    value: str
    platform: str = ""

    @property
    def priority(self) -> int:
        return _PRIORITY[self.kind]


@dataclass(frozen=True)
class RawPlatformId:
    platform: str
    id: str


class RawIdentifiers(NamedTuple):
    """Identifiers as a caller sent them, before normalisation (a tuple: built per item)."""

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
    at = email.find("@")
    if at > 64 or not _EMAIL.match(email):
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
    if not value.isprintable():
        return None, FieldViolation(field, "contains control or invisible characters")
    return value, None


@dataclass(frozen=True)
class BlockedValues:
    """Placeholder values that never identify anyone, compared after normalisation.

    Sources send these when they know nothing (`null`, `anonymous`), in test fixtures
    (`test@test.com`) or as unset numeric ids (`0`, `00000000-0000-...`). Matching on them
    would merge every such customer into one, the classic over-merge.
    """

    values: frozenset[str]
    # All patterns as one alternation: one regex call per value, whatever their number.
    pattern: re.Pattern[str] | None = field(default=None)

    @classmethod
    def of(cls, values: Iterable[str], patterns: Iterable[str] = ()) -> BlockedValues:
        alternatives = [f"(?:{p})" for p in patterns]
        return cls(
            frozenset(v.strip().lower() for v in values if v.strip()),
            re.compile("|".join(alternatives)) if alternatives else None,
        )

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if value in self.values:
            return True
        return self.pattern is not None and self.pattern.fullmatch(value) is not None


DEFAULT_BLOCKED_VALUES = (
    "null", "none", "nil", "undefined", "anonymous", "unknown", "n/a", "na", "-1",
    "[object object]",
    "test@test.com", "test@example.com", "noemail@noemail.com", "none@none.com",
    "no-reply@example.com", "email@example.com", "user@example.com",
)
# All zeros (with any dashes), as unset UUIDs and numeric ids look; an all-zero phone number.
DEFAULT_BLOCKED_PATTERNS = (r"[0\-]+", r"\+0+")

NO_BLOCKED_VALUES = BlockedValues.of(())


class NormalizedIdentifiers(NamedTuple):
    keys: tuple[IdentityKey, ...]
    session_id: str = ""

    def of_kind(self, kind: IdentityKind) -> list[IdentityKey]:
        return [key for key in self.keys if key.kind is kind]


class PlatformIdLike(Protocol):
    @property
    def platform(self) -> str: ...
    @property
    def id(self) -> str: ...


class IdentifiersLike(Protocol):
    """What normalisation reads: `RawIdentifiers`, or any message with the same fields (the
    contract's `Identifiers`, read as is so batches build no copy per item)."""

    @property
    def user_id(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def phone(self) -> str: ...
    @property
    def anonymous_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def platform_ids(self) -> Sequence[PlatformIdLike]: ...
    @property
    def cookies(self) -> Sequence[str]: ...


# Enum members read through a descriptor on every access; hot loops use these names.
_EMAIL_KIND = IdentityKind.EMAIL
_PHONE_KIND = IdentityKind.PHONE

# The single-valued identifiers, in match priority.
_SCALARS: tuple[tuple[str, IdentityKind], ...] = (
    ("user_id", IdentityKind.USER_ID),
    ("email", IdentityKind.EMAIL),
    ("phone", IdentityKind.PHONE),
    ("device_id", IdentityKind.DEVICE_ID),
    ("anonymous_id", IdentityKind.ANONYMOUS_ID),
)


def normalize_identifiers(
    raw: IdentifiersLike,
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
    for attribute, kind in _SCALARS:
        given = getattr(raw, attribute)
        if not given or given.isspace():
            continue
        path = f"{field}.{attribute}"
        if kind is _EMAIL_KIND:
            value, violation = normalize_email(given, path)
        elif kind is _PHONE_KIND:
            value, violation = normalize_phone(given, path, default_region)
        else:
            value, violation = _plain(given, path)
        if violation is not None:
            violations.append(violation)
        elif value and value.lower() in blocked:
            blocked_seen = True
        elif value:
            keys.append(IdentityKey(kind, value))
    platform_ids = raw.platform_ids
    if len(platform_ids) > MAX_PLATFORM_IDS:
        violations.append(
            FieldViolation(
                f"{field}.platform_ids",
                f"has {len(platform_ids)} entries; the limit is {MAX_PLATFORM_IDS}",
            )
        )
    else:
        for index, platform_id in enumerate(platform_ids):
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
            value, violation = _plain(platform_id.id, f"{path}.id")
            if violation is not None:
                violations.append(violation)
            elif value and value.lower() in blocked:
                blocked_seen = True
            elif value:
                keys.append(IdentityKey(IdentityKind.PLATFORM, value, platform))
    cookies = raw.cookies
    if len(cookies) > MAX_COOKIES:
        violations.append(
            FieldViolation(
                f"{field}.cookies", f"has {len(cookies)} entries; the limit is {MAX_COOKIES}"
            )
        )
    else:
        for index, cookie in enumerate(cookies):
            if not cookie or cookie.isspace():
                continue
            value, violation = _plain(cookie, f"{field}.cookies[{index}]")
            if violation is not None:
                violations.append(violation)
            elif value and value.lower() in blocked:
                blocked_seen = True
            elif value:
                keys.append(IdentityKey(IdentityKind.COOKIE, value))
    session_id = ""
    if raw.session_id:
        cleaned_session, session_violation = _plain(raw.session_id, f"{field}.session_id")
        if session_violation is not None:
            violations.append(session_violation)
        session_id = cleaned_session or ""
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
    if len(keys) > 1:
        keys = sorted(set(keys), key=lambda key: (key.priority, key.platform, key.value))
    return NormalizedIdentifiers(tuple(keys), session_id), violations
