"""Customer ids as the identity service issues them (UUIDs)."""

from __future__ import annotations

import re
import uuid

from cdp_errors import FieldViolation, InvalidArgument

# The canonical text form (lower case, hyphenated): what the identity service issues, so
# nearly every id arrives this way and needs no parsing.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_customer_id(raw: str, field: str) -> tuple[str, FieldViolation | None]:
    """The canonical form of a customer id, or the violation naming `field`."""
    if _CANONICAL.fullmatch(raw):
        return raw, None
    text = raw.strip()
    if not text:
        return "", FieldViolation(field, "is required")
    try:
        return str(uuid.UUID(text)), None
    except ValueError:
        return "", FieldViolation(field, "is not a customer id (a UUID)")


def parse_customer_id(raw: str, field: str) -> str:
    customer_id, violation = check_customer_id(raw, field)
    if violation is not None:
        raise InvalidArgument([violation])
    return customer_id
