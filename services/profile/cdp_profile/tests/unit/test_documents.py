from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cdp_profile.domain.documents import DocumentLimits, parse_observed_at, split_attributes
from cdp_profile.domain.strategies import Strategy, StrategyBook, StrategyName, StrategyRule

BOOK = StrategyBook(
    Strategy(StrategyName.MOST_RECENT),
    [
        StrategyRule(("preferences",), Strategy(StrategyName.DEEP_MERGE)),
        StrategyRule(("customer", "lifetimeValue"), Strategy(StrategyName.HIGHEST_VALUE)),
    ],
)
LIMITS = DocumentLimits(max_bytes=1000, max_depth=4, max_fields=5)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def split(document: dict[str, object]) -> tuple[list[tuple[str, object]], list[tuple[str, str]]]:
    leaves, violations = split_attributes(
        document, len(json.dumps(document)), book=BOOK, limits=LIMITS
    )
    return [(leaf.path, leaf.value) for leaf in leaves], [
        (v.field, v.description) for v in violations
    ]


def test_objects_split_into_dot_path_fields_and_lists_stay_whole() -> None:
    leaves, violations = split(
        {"user": {"firstName": "Ada", "tags": ["vip"]}, "account": {"companyName": "AE"}}
    )
    assert violations == []
    assert leaves == [
        ("user.firstName", "Ada"),
        ("user.tags", ["vip"]),
        ("account.companyName", "AE"),
    ]


def test_objects_merged_whole_are_one_field() -> None:
    leaves, _ = split({"preferences": {"email": {"weekly": True}}, "user": {"x": 1}})
    assert leaves == [("preferences", {"email": {"weekly": True}}), ("user.x", 1)]


def test_whole_numbers_from_protobuf_floats_become_integers_and_nulls_are_ignored() -> None:
    leaves, _ = split({"customer": {"orderCount": 7.0, "totalSpent": 12.5, "note": None}})
    assert leaves == [("customer.orderCount", 7), ("customer.totalSpent", 12.5)]
    assert isinstance(leaves[0][1], int)


def test_a_document_over_the_size_limit_is_refused_on_its_size() -> None:
    leaves, violations = split_attributes(
        {"user": {}}, 1500, book=BOOK, limits=LIMITS, field="fragment.attributes"
    )
    assert leaves == ()
    assert [(v.field, v.description) for v in violations] == [
        ("fragment.attributes", "is 1,500 bytes; the limit is 1,000 bytes")
    ]


def test_a_document_nested_too_deeply_is_refused_naming_where() -> None:
    _, violations = split({"a": {"b": {"c": {"d": {"e": 1}}}}})
    assert violations == [("attributes.a.b.c.d", "is nested deeper than the limit of 4 levels")]
    _, in_a_list = split({"a": {"b": {"c": [[1]]}}})
    assert in_a_list == [("attributes.a.b.c", "is nested deeper than the limit of 4 levels")]


def test_keys_that_are_not_field_names_are_refused_without_echoing_them() -> None:
    _, violations = split({"user": {"ada@example.com": "x", "ok": 1}})
    assert violations == [
        (
            "attributes.user",
            "has a key that is not a field name (1 to 64 letters, digits, '_' or '-')",
        )
    ]


def test_empty_documents_and_too_many_fields_are_refused() -> None:
    assert split({"user": {"a": None}})[1] == [("attributes", "has no fields with a value")]
    assert split({f"f{i}": i for i in range(6)})[1] == [
        ("attributes", "has 6 fields; the limit is 5")
    ]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_numbers_json_cannot_hold_are_refused_naming_the_field(number: float) -> None:
    _, violations = split({"customer": {"score": number}, "user": {"ratings": [1.5, number]}})
    assert violations == [
        ("attributes.customer.score", "is not a finite number"),
        ("attributes.user.ratings", "is not a finite number"),
    ]


def test_a_metric_resolved_by_highest_value_must_be_a_number() -> None:
    _, violations = split({"customer": {"lifetimeValue": "lots"}})
    assert violations == [("attributes.customer.lifetimeValue", "highest_value needs a number")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "is required: when the source observed the values"),
        ((0, 1_000_000_000), "is not a valid timestamp (seconds or nanos out of range)"),
        ((0, -1), "is not a valid timestamp (seconds or nanos out of range)"),
        ((253402300800, 0), "is not a valid timestamp (seconds or nanos out of range)"),
        (
            (int((NOW + timedelta(hours=1)).timestamp()), 0),
            "is 3,600 s in the future; at most 300 s of clock skew is accepted",
        ),
    ],
)
def test_malformed_or_future_timestamps_are_refused(
    raw: tuple[int, int] | None, expected: str
) -> None:
    moment, violation = parse_observed_at(raw, now=NOW, max_skew=timedelta(seconds=300))
    assert moment is None and violation is not None
    assert (violation.field, violation.description) == ("observed_at", expected)


def test_timestamps_keep_microseconds() -> None:
    moment, violation = parse_observed_at(
        (int(NOW.timestamp()), 123_456_789), now=NOW, max_skew=timedelta(seconds=1)
    )
    assert violation is None
    assert moment == NOW.replace(microsecond=123456)
