from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdp_event_router.adapters.config_files import (
    DEFAULTS,
    load_routing,
    load_tracking_plan,
    load_triggers,
)
from cdp_event_router.domain.model import EventIdentifiers, IncomingEvent, Lane
from cdp_settings.config_files import ConfigError

ROUTING = load_routing(DEFAULTS / "routing.yaml")


def incoming(event_type: str, source: str = "web", **properties: object) -> IncomingEvent:
    return IncomingEvent(id="e", type=event_type, source=source,
                         timestamp=datetime.now(UTC), identifiers=EventIdentifiers(email="a@b.c"),
                         properties=dict(properties))


@pytest.mark.parametrize(
    ("event_type", "targets"),
    [
        ("email.opened", ("analytics", "crm")),
        ("email.clicked", ("analytics", "crm", "personalization")),
        ("email.bounced", ("crm",)),
        ("email.complained", ("crm", "support")),
        ("email.unsubscribed", ("crm", "analytics", "advertising")),
        ("page.viewed", ("email", "analytics", "advertising")),
        ("product.viewed", ("email", "analytics", "advertising")),
        ("cart.updated", ("email", "analytics")),
        ("order.completed", ("email", "analytics", "crm", "advertising")),
        ("support.ticket.created", ("email", "crm")),
        ("wishlist.shared", ("analytics",)),
    ],
)
def test_the_default_table_is_the_brief_s(event_type: str, targets: tuple[str, ...]) -> None:
    assert ROUTING.targets_for(incoming(event_type)) == targets


def test_the_source_platform_is_never_a_target() -> None:
    assert ROUTING.targets_for(incoming("page.viewed", source="mailchimp")) == (
        "analytics", "advertising")
    assert ROUTING.targets_for(incoming("email.bounced", source="crm")) == ()


def test_critical_types_are_real_time_and_high_volume_ones_batched() -> None:
    for critical in ("email.unsubscribed", "email.complained", "checkout.started",
                     "payment.failed", "login.failed"):
        assert ROUTING.lane(critical) is Lane.REALTIME
    for bulk in ("email.opened", "page.viewed", "product.viewed"):
        assert ROUTING.lane(bulk) is Lane.BATCHED


def test_conditions_pick_a_rule_and_fall_through_when_they_fail(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text(
        "roles: {crm: crm, analytics: analytics}\n"
        "routes:\n"
        "  - type: order.completed\n"
        "    targets: [crm, analytics]\n"
        "    when:\n"
        "      - {property: total, greaterThan: 100}\n"
        "  - type: order.*\n"
        "    targets: [analytics]\n"
        "realtime: []\n"
    )
    table = load_routing(rules)
    assert table.targets_for(incoming("order.completed", total=250)) == ("crm", "analytics")
    assert table.targets_for(incoming("order.completed", total=20)) == ("analytics",)
    assert table.targets_for(incoming("refund.issued")) == ()


def test_routing_file_errors_name_file_line_and_entry(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text(
        "roles: {crm: crm}\n"
        "routes:\n"
        "  - type: Order Completed\n"
        "    targets: [crm]\n"
        "  - type: order.completed\n"
        "    targets: [warehouse]\n"
        "  - type: order.refunded\n"
        "    targets: [crm]\n"
        "    when:\n"
        "      - {property: total, roughly: 3}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_routing(rules)
    problems = [str(p) for p in caught.value.problems]
    assert problems[0].endswith(":3: route 1: type 'Order Completed' is not an event type, "
                                "prefix.* or *")
    assert ":6: route 2: unknown role(s) warehouse" in problems[1]
    assert "route 3, condition 1: needs exactly one operator" in problems[2]


def test_trigger_file_errors_name_the_trigger_and_attribute(tmp_path: Path) -> None:
    triggers = tmp_path / "triggers.yaml"
    triggers.write_text(
        "triggers:\n"
        "  - name: orders\n"
        "    events: [order.completed]\n"
        "    set:\n"
        "      ecommerce.order_count: {tally: events}\n"
        "      ecommerce.revenue: {sum: timestamp}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_triggers(triggers)
    problems = [str(p) for p in caught.value.problems]
    assert "triggers.yaml:5: trigger orders, ecommerce.order_count: unknown aggregate 'tally'" \
        in problems[0]
    assert ":6: trigger orders, ecommerce.revenue: sum needs" in problems[1]


def test_default_triggers_cover_the_brief() -> None:
    triggers = load_triggers(DEFAULTS / "triggers.yaml")
    attributes = {p.attribute for t in triggers.triggers for p in t.projections}
    assert {"email.last_open_date", "ecommerce.order_count", "ecommerce.last_order_date",
            "customer.lifetime_value", "ecommerce.cart"} <= attributes


def test_a_tracking_plan_with_a_broken_schema_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("events:\n  order.completed:\n    properties: {type: objekt}\n")
    with pytest.raises(ConfigError) as caught:
        load_tracking_plan(plan)
    assert ":2: order.completed: not a JSON Schema" in str(caught.value)
