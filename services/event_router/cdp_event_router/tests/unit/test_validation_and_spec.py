from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdp_event_router.domain.model import EventIdentifiers, IncomingEvent
from cdp_event_router.domain.segment_spec import event_type_of, from_segment
from cdp_event_router.domain.validation import EventValidator, TrackingPlan

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
VALIDATOR = EventValidator(known_sources=frozenset({"web", "shopify"}))


def incoming(**overrides: Any) -> IncomingEvent:
    fields: dict[str, Any] = {"id": "e-1", "type": "order.completed", "source": "shopify",
                              "timestamp": NOW, "identifiers": EventIdentifiers(email="a@b.c")}
    fields.update(overrides)
    return IncomingEvent(**fields)


def test_a_complete_event_passes() -> None:
    assert VALIDATOR.validate(incoming(), NOW) == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"id": ""}, "id"),
        ({"type": "orderCompleted"}, "type"),
        ({"type": "a.b.c.d.e"}, "type"),
        ({"source": "myspace"}, "source"),
        ({"timestamp": None}, "timestamp"),
        ({"timestamp": NOW + timedelta(days=2)}, "timestamp"),
        ({"timestamp": NOW - timedelta(days=4000)}, "timestamp"),
        ({"identifiers": EventIdentifiers()}, "identifiers"),
        ({"customer_id": "not-a-uuid"}, "customer_id"),
        ({"size": 40_000}, "properties"),
    ],
)
def test_each_rule_names_its_field(overrides: dict[str, Any], field: str) -> None:
    assert [v.field for v in VALIDATOR.validate(incoming(**overrides), NOW)] == [field]


def test_a_tracking_plan_checks_properties_without_quoting_values() -> None:
    plan = TrackingPlan(schemas={"order.completed": {
        "type": "object", "required": ["total"],
        "properties": {"total": {"type": "number"}, "email": {"type": "boolean"}}}},
        allow_unplanned=False)
    validator = EventValidator(known_sources=frozenset({"shopify"}), plan=plan)
    problems = validator.validate(incoming(properties={"email": "ada@example.com"}), NOW)
    assert [(p.field, p.description) for p in problems] == [
        ("properties", "is missing required total"),
        ("properties.email", "must be of type boolean"),
    ]
    assert "ada@example.com" not in str(problems)
    unplanned = validator.validate(incoming(type="cart.updated"), NOW)
    assert [p.field for p in unplanned] == ["type"]


@pytest.mark.parametrize(
    ("name", "unified"),
    [
        ("Order Completed", "order.completed"),
        ("Product List Viewed", "product_list.viewed"),
        ("checkout.started", "checkout.started"),
        ("Signed Up!", "signed.up"),
    ],
)
def test_segment_event_names_become_object_action_types(name: str, unified: str) -> None:
    assert event_type_of(name) == unified


def test_an_identify_message_carries_the_identifiers_it_links() -> None:
    event, problems = from_segment(
        {"type": "identify", "userId": "u-1", "anonymousId": "a-1", "messageId": "m-1",
         "traits": {"email": "ada@example.com", "plan": "pro"},
         "timestamp": "2026-12-04T10:00:00Z", "context": {"device": {"id": "d-1"}}},
        source="web", received_at=NOW, path="")
    assert problems == [] and event is not None
    assert event.type == "user.identified"
    ids = event.identifiers
    assert (ids.user_id, ids.anonymous_id, ids.email, ids.device_id) == (
        "u-1", "a-1", "ada@example.com", "d-1")
    assert event.properties == {"email": "ada@example.com", "plan": "pro"}
    assert event.timestamp == datetime(2026, 12, 4, 10, tzinfo=UTC)


def test_spec_errors_carry_the_message_path() -> None:
    _, problems = from_segment({"type": "track", "timestamp": "soon"}, source="web",
                               received_at=NOW, path="batch[4]")
    assert [p.field for p in problems] == ["batch[4].event", "batch[4].timestamp"]
