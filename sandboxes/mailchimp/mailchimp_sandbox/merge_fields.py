"""Merge-field definitions and the value rules Mailchimp applies to them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from mailchimp_sandbox.errors import invalid

TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
TAG = re.compile(r"^[A-Z][A-Z0-9_]{0,9}$")
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d-%m-%Y", "%m/%d/%Y")
_BIRTHDAY = re.compile(r"^(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])$")
_URL = re.compile(r"^https?://\S+$")
_ZIP = re.compile(r"^\d{5}(-\d{4})?$")


def definition(list_id: str, merge_id: int, body: dict[str, Any], order: int) -> dict[str, Any]:
    """A new merge field from a create body; raises ApiError when the body is invalid."""
    name = body.get("name")
    kind = body.get("type")
    problems = []
    if not isinstance(name, str) or not name.strip():
        problems.append({"field": "name", "message": "This value should not be blank."})
    if kind not in TYPES:
        problems.append({"field": "type", "message": f"Must be one of: {', '.join(TYPES)}."})
    tag = body.get("tag")
    if tag is not None and (not isinstance(tag, str) or not TAG.match(tag.upper())):
        problems.append(
            {
                "field": "tag",
                "message": "Merge tags are at most 10 characters: letters, digits and _, "
                "starting with a letter.",
            }
        )
    if problems:
        raise invalid("The resource submitted could not be validated.", problems)
    options = dict(body.get("options") or {})
    if kind in ("radio", "dropdown"):
        choices = options.get("choices")
        if not isinstance(choices, list) or not choices:
            raise invalid(
                "The resource submitted could not be validated.",
                [{"field": "options.choices", "message": "Choices are required for this type."}],
            )
    return {
        "merge_id": merge_id,
        "tag": (tag or "").upper(),
        "name": name,
        "type": kind,
        "required": bool(body.get("required", False)),
        "default_value": str(body.get("default_value", "")),
        "public": bool(body.get("public", False)),
        "display_order": int(body.get("display_order", order)),
        "options": options,
        "help_text": str(body.get("help_text", "")),
        "list_id": list_id,
    }


def generated_tag(name: str, taken: set[str]) -> str:
    """Mailchimp's own way when no tag is given: from the name, made unique with a number."""
    base = re.sub(r"[^A-Z0-9]", "", name.upper())[:10] or "MMERGE"
    if not base[0].isalpha():
        base = ("M" + base)[:10]
    candidate, number = base, 1
    while candidate in taken:
        suffix = str(number)
        candidate = base[: 10 - len(suffix)] + suffix
        number += 1
    return candidate


def validate_value(field: dict[str, Any], value: Any) -> tuple[Any, str | None]:
    """The stored form of `value` and None, or (None, message) when Mailchimp refuses it."""
    kind = field["type"]
    if value is None or value == "":
        return "", None
    if kind == "text" and isinstance(value, str) and len(value) <= 63:
        # At most 4 bytes per character: certainly within the 255-byte limit.
        return value, None
    if kind == "address":
        if not isinstance(value, dict):
            return None, "Please enter a complete address"
        missing = [key for key in ("addr1", "city", "state", "zip") if not value.get(key)]
        if missing:
            return None, "Please enter a complete address"
        return {
            "addr1": str(value["addr1"]),
            "addr2": str(value.get("addr2", "")),
            "city": str(value["city"]),
            "state": str(value["state"]),
            "zip": str(value["zip"]),
            "country": str(value.get("country", "US")),
        }, None
    if isinstance(value, (dict, list)):
        return None, "Please enter a valid value"
    text = str(value)
    if kind == "number":
        try:
            number = float(text)
        except ValueError:
            return None, "Please enter a number"
        return (int(number) if number.is_integer() else number), None
    if kind == "date":
        for pattern in _DATE_FORMATS:
            try:
                return datetime.strptime(text, pattern).strftime("%Y-%m-%d"), None
            except ValueError:
                continue
        return None, "Please enter a valid date"
    if kind == "birthday":
        return (text, None) if _BIRTHDAY.match(text) else (None, "Please enter a valid birthday")
    if kind in ("url", "imageurl"):
        return (text, None) if _URL.match(text) else (None, "Please enter a valid URL")
    if kind == "zip":
        return (text, None) if _ZIP.match(text) else (None, "Please enter a valid zip code")
    if kind in ("radio", "dropdown"):
        choices = [str(choice) for choice in field["options"].get("choices", [])]
        return (text, None) if text in choices else (None, "Please choose one of the options")
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return (text, None) if 6 <= len(digits) <= 16 else (None, "Please enter a valid phone")
    encoded = text.encode("utf-8")[:255]
    return encoded.decode("utf-8", errors="ignore"), None


DEFAULT_FIELDS: tuple[dict[str, Any], ...] = (
    {"tag": "FNAME", "name": "First Name", "type": "text"},
    {"tag": "LNAME", "name": "Last Name", "type": "text"},
    {"tag": "ADDRESS", "name": "Address", "type": "address"},
    {"tag": "PHONE", "name": "Phone Number", "type": "phone"},
)
