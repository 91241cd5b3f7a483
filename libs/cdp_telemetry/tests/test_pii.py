from __future__ import annotations

import pytest

from cdp_telemetry.pii import contains_pii, fingerprint, redact


@pytest.mark.parametrize(
    "text",
    [
        "Key (value)=(ada.lovelace+news@example.co.uk) already exists.",
        "call +447700900123 now",
        "call (415) 555-2671",
        "call 415.555.2671",
        "uk 020 7946 0958",
    ],
)
def test_emails_and_phones_are_masked(text: str) -> None:
    masked = redact(text)
    assert "@example" not in masked
    assert "7700900123" not in masked and "555-2671" not in masked and "7946 0958" not in masked
    assert contains_pii(text)


@pytest.mark.parametrize(
    "text",
    [
        "customer 5f0c6c1e-8d0e-4a5b-9a7c-1d2e3f4a5b6c resolved",
        "at 2026-12-04T03:25:55+00:00",
        "resolved 1500 identities in 12.5 ms",
        "merge refused: limit of 5 emails per customer",
    ],
)
def test_ids_dates_and_counts_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_fingerprint_is_stable_and_does_not_contain_the_value() -> None:
    assert fingerprint("ada@example.com") == fingerprint("ada@example.com")
    assert fingerprint("ada@example.com") != fingerprint("bob@example.com")
    assert "ada" not in fingerprint("ada@example.com")
    assert len(fingerprint("ada@example.com")) == 12
