from __future__ import annotations

import pytest

from cdp_identity.domain.identifiers import (
    DEFAULT_BLOCKED_PATTERNS,
    DEFAULT_BLOCKED_VALUES,
    BlockedValues,
    IdentityKind,
    RawIdentifiers,
    RawPlatformId,
    normalize_identifiers,
)

PLATFORMS = frozenset({"mailchimp", "shopify"})


def normalize(
    raw: RawIdentifiers, region: str = "US"
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    normalized, violations = normalize_identifiers(
        raw, default_region=region, known_platforms=PLATFORMS
    )
    return (
        [(k.kind.value, k.platform, k.value) for k in normalized.keys],
        [(v.field, v.description) for v in violations],
    )


def test_email_is_trimmed_and_lower_cased_but_plus_and_dots_are_kept() -> None:
    keys, violations = normalize(RawIdentifiers(email="  A.Da+News@Example.COM "))
    assert violations == []
    assert keys == [("email", "", "a.da+news@example.com")]


@pytest.mark.parametrize(
    "email",
    [
        "ada",
        "ada@",
        "@example.com",
        "ada@example",
        "a da@example.com",
        "ada@@example.com",
        "ada@exa_mple.com",
    ],
)
def test_malformed_email_is_rejected_naming_the_field_not_the_value(email: str) -> None:
    _, violations = normalize(RawIdentifiers(email=email))
    assert violations == [("identifiers.email", "is not a valid email address")]


def test_oversized_email_is_rejected_with_its_length() -> None:
    _, violations = normalize(RawIdentifiers(email="a" * 250 + "@example.com"))
    assert violations == [("identifiers.email", "is 262 characters long; the limit is 254")]


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
    ],
)
def test_phone_becomes_e164_using_the_default_region(raw: str, region: str, expected: str) -> None:
    keys, violations = normalize(RawIdentifiers(phone=raw), region)
    assert violations == []
    assert keys == [("phone", "", expected)]


@pytest.mark.parametrize("phone", ["12", "not a phone", "+1 555 0000"])
def test_invalid_phone_is_rejected(phone: str) -> None:
    _, violations = normalize(RawIdentifiers(phone=phone))
    assert len(violations) == 1 and violations[0][0] == "identifiers.phone"


def test_no_identifiers_at_all_is_rejected() -> None:
    _, violations = normalize(RawIdentifiers(session_id="s-1"))
    assert [field for field, _ in violations] == ["identifiers"]


def test_unknown_platform_and_empty_platform_id_are_rejected_with_their_paths() -> None:
    _, violations = normalize(
        RawIdentifiers(
            email="ada@example.com",
            platform_ids=(RawPlatformId("myspace", "1"), RawPlatformId("shopify", " ")),
        )
    )
    assert [field for field, _ in violations] == [
        "identifiers.platform_ids[0].platform",
        "identifiers.platform_ids[1].id",
    ]


def test_keys_come_in_match_priority_order_without_duplicates() -> None:
    keys, _ = normalize(
        RawIdentifiers(
            cookies=("c1", "c1"),
            anonymous_id="anon",
            device_id="dev",
            email="ada@example.com",
            user_id="u-1",
            phone="+14155552671",
            platform_ids=(RawPlatformId("Shopify", "77"),),
        )
    )
    assert [kind for kind, _, _ in keys] == [
        IdentityKind.USER_ID,
        IdentityKind.EMAIL,
        IdentityKind.PHONE,
        IdentityKind.PLATFORM,
        IdentityKind.DEVICE_ID,
        IdentityKind.ANONYMOUS_ID,
        IdentityKind.COOKIE,
    ]
    assert ("platform", "shopify", "77") in keys


def test_identifier_over_255_characters_is_rejected() -> None:
    _, violations = normalize(RawIdentifiers(user_id="u" * 256))
    assert violations == [("identifiers.user_id", "is 256 characters long; the limit is 255")]


def test_blocked_placeholder_values_never_become_identifiers() -> None:
    blocked = BlockedValues.of(DEFAULT_BLOCKED_VALUES, DEFAULT_BLOCKED_PATTERNS)
    normalized, violations = normalize_identifiers(
        RawIdentifiers(email="TEST@test.com", anonymous_id="anonymous",
                       device_id="00000000-0000-0000-0000-000000000000", user_id="u-1"),
        default_region="US", known_platforms=PLATFORMS, blocked=blocked,
    )
    assert violations == []
    assert [(k.kind.value, k.value) for k in normalized.keys] == [("user_id", "u-1")]


def test_a_request_of_nothing_but_blocked_values_is_rejected() -> None:
    blocked = BlockedValues.of(DEFAULT_BLOCKED_VALUES, DEFAULT_BLOCKED_PATTERNS)
    _, violations = normalize_identifiers(
        RawIdentifiers(user_id="null", cookies=("0",)), default_region="US",
        known_platforms=PLATFORMS, blocked=blocked,
    )
    assert [v.field for v in violations] == ["identifiers"]
    assert "blocked placeholder" in violations[0].description
