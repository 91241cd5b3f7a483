from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdp_errors import InvalidArgument
from cdp_segmentation.domain.criteria import check_criteria, criteria_from_document, to_document
from cdp_segmentation.domain.documents import normalize_profile
from cdp_segmentation.domain.evaluation import matches
from cdp_segmentation.domain.model import (
    AttributeSchema,
    FieldSpec,
    FieldType,
    LearnedField,
    RawCondition,
    RawGroup,
    Schedule,
    ScheduleKind,
)
from cdp_segmentation.domain.schedules import cron_problem, next_run

SCHEMA = AttributeSchema(
    declared={
        "customer.lifetime_value": FieldSpec("customer.lifetime_value", FieldType.NUMBER,
                                             ("crm",)),
        "email.last_open_date": FieldSpec("email.last_open_date", FieldType.DATETIME,
                                          ("mailchimp",)),
        "account.companyName": FieldSpec("account.companyName", FieldType.STRING),
        "user.tags": FieldSpec("user.tags", FieldType.LIST),
    },
    learned={"web.visits": LearnedField("web.visits", frozenset({FieldType.NUMBER}))},
)
PLATFORMS = ("crm", "mailchimp", "shopify")
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def cond(field: str, operator: str, value: Any = None, **extra: Any) -> RawCondition:
    return RawCondition(field, operator, value, value is not None, **extra)


def check(*children: RawCondition | RawGroup | None, logic: str = "and") -> Any:
    return check_criteria(RawGroup(logic, tuple(children)), SCHEMA, platforms=PLATFORMS)


def violations(*children: RawCondition | RawGroup | None, logic: str = "and") -> dict[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        check(*children, logic=logic)
    return {v.field: v.description for v in caught.value.violations}


def test_every_bad_part_is_named_by_its_path() -> None:
    found = violations(
        cond("customer.lifetime_value", "greaterThan", 500, source="crm"),
        cond("customer.lifetime_value", "greaterThn", 500),
        cond("account.companyName", "greaterThan", "a"),
        RawGroup("or", (cond("email.last_opn_date", "exists"), None)),
        cond("customer.lifetime_value", "equals", "500"),
        cond("email.last_open_date", "withinLast", 30),
        cond("customer.lifetime_value", "exists", source="mailchimp"),
    )
    assert set(found) == {
        "criteria.conditions[1].operator",
        "criteria.conditions[2].operator",
        "criteria.conditions[3].conditions[0].field",
        "criteria.conditions[3].conditions[1]",
        "criteria.conditions[4].value",
        "criteria.conditions[5].unit",
        "criteria.conditions[6].source",
    }
    assert "did you mean greaterThan?" in found["criteria.conditions[1].operator"]
    assert "did you mean email.last_open_date?" in found[
        "criteria.conditions[3].conditions[0].field"]


def test_not_takes_exactly_one_child_and_groups_need_an_operator() -> None:
    found = violations(cond("user.tags", "exists"), cond("user.tags", "exists"), logic="not")
    assert found == {"criteria.conditions": "not takes exactly one condition or group, got 2"}
    assert "criteria.operator" in violations(cond("user.tags", "exists"), logic="")


def test_the_stored_form_reads_back_as_the_same_tree() -> None:
    tree = check(
        cond("customer.lifetime_value", "between", [100, 900]),
        cond("email.last_open_date", "withinLast", 30, unit="days", source="mailchimp"),
        RawGroup("not", (cond("account.companyName", "in", ["Acme", "Initech"]),)),
        cond("web.visits", "greaterThan", 3),
        cond("email.last_open_date", "after", "2026-01-01"),
    )
    assert criteria_from_document(to_document(tree)) == tree


def evaluate(document: dict[str, Any], *children: RawCondition | RawGroup,
             logic: str = "and") -> bool:
    profile = normalize_profile(
        document, {p: s.type for p, s in SCHEMA.declared.items()}, email_path="user.email"
    )
    return matches(check(*children, logic=logic), profile, NOW)


def test_missing_fields_are_false_except_for_not_equals_and_under_not() -> None:
    empty: dict[str, Any] = {}
    assert not evaluate(empty, cond("customer.lifetime_value", "greaterThan", 5))
    assert evaluate(empty, cond("customer.lifetime_value", "notEquals", 5))
    assert evaluate(empty, RawGroup("not", (cond("customer.lifetime_value", "greaterThan", 5),)))
    assert not evaluate(empty, cond("customer.lifetime_value", "exists"))


def test_values_are_read_as_the_declared_type() -> None:
    profile = {"customer": {"lifetime_value": "600.50"},
               "email": {"last_open_date": (NOW - timedelta(days=29)).isoformat()},
               "account": {"companyName": "Acme Corp"}, "user": {"tags": ["vip", 7]}}
    assert evaluate(profile, cond("customer.lifetime_value", "greaterThan", 600))
    assert evaluate(profile, cond("email.last_open_date", "withinLast", 30, unit="days"))
    assert not evaluate(profile, cond("email.last_open_date", "withinLast", 28, unit="days"))
    assert evaluate(profile, cond("account.companyName", "contains", "Corp"))
    assert evaluate(profile, cond("user.tags", "contains", "7"))
    assert evaluate(profile, cond("customer.lifetime_value", "lessThan", 10),
                    cond("user.tags", "contains", "vip"), logic="or")


def test_schedules_run_at_the_same_instants_everywhere() -> None:
    at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert next_run(Schedule(ScheduleKind.HOURLY), at) == datetime(2026, 3, 1, 13, tzinfo=UTC)
    assert next_run(Schedule(ScheduleKind.DAILY), at) == datetime(2026, 3, 2, tzinfo=UTC)
    assert next_run(Schedule(ScheduleKind.CRON, "15 6 * * 1"), at) == datetime(
        2026, 3, 2, 6, 15, tzinfo=UTC)
    assert next_run(Schedule(ScheduleKind.REALTIME), at) is None
    assert cron_problem("61 * * * *") is not None
    assert cron_problem("* * *") is not None
    assert cron_problem("*/5 * * * *") is None
