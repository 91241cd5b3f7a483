"""Customer ids as the identity service issues them (UUIDs)."""

from __future__ import annotations

import uuid

from cdp_errors import FieldViolation, InvalidArgument


def check_customer_id(raw: str, field: str) -> tuple[str, FieldViolation | None]:
    """The canonical form of a customer id, or the violation naming `field`."""
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
