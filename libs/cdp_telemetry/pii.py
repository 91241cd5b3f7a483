"""Keeping personal data out of logs and traces.

Two layers: code records fingerprints instead of values (`fingerprint`), and everything
that leaves the process through logs or spans passes `redact`, which masks anything that
still looks like an email or a phone number (driver error messages quote the offending row,
for example `Key (value)=(ada@example.com) already exists`).
"""

from __future__ import annotations

import hashlib
import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# E.164 (what the suite stores) and the common national layouts such as (415) 555-2671.
# Dates, UUIDs and counters are deliberately left alone: too broad a pattern would make
# traces useless.
_PHONE = re.compile(
    r"(?<![\w+])\+\d{7,15}(?!\d)"
    r"|(?<!\d)\(?\d{3}\)?[\s.\-]\d{3}[\s.\-]\d{4}(?!\d)"
    r"|(?<!\d)0\d{2,4}[\s\-]\d{3,4}[\s\-]?\d{3,4}(?!\d)"
)

EMAIL_MASK = "<email>"
PHONE_MASK = "<phone>"


def redact(text: str) -> str:
    """`text` with every email and phone-number look-alike masked."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL_MASK, text)
    return _PHONE.sub(PHONE_MASK, text)


def contains_pii(text: str) -> bool:
    return redact(text) != text


def fingerprint(value: str) -> str:
    """A short, stable, non-reversible tag for a personal value, safe for logs and spans.

    Twelve hex digits of SHA-256: enough to tell records apart while debugging, too short to
    serve as a lookup key for the value.
    """
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
