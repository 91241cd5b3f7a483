from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from cdp_identity.domain.identifiers import IdentityKey, IdentityKind
from cdp_identity.domain.merging import (
    DEFAULT_LIMITS,
    CustomerSummary,
    IdentityLimits,
    plan_merge,
    plan_resolution,
)

OLD = datetime(2024, 1, 1, tzinfo=UTC)
NEW = datetime(2026, 1, 1, tzinfo=UTC)
EMAIL = IdentityKey(IdentityKind.EMAIL, "ada@example.com")
PHONE = IdentityKey(IdentityKind.PHONE, "+14155552671")
DEVICE = IdentityKey(IdentityKind.DEVICE_ID, "dev-1")


def customer(cid: str, created: datetime, *, user_ids: tuple[str, ...] = (),
             **counts: int) -> CustomerSummary:
    kinds: Counter[IdentityKind] = Counter({IdentityKind(k): n for k, n in counts.items()})
    if user_ids:
        kinds[IdentityKind.USER_ID] = len(user_ids)
    return CustomerSummary(cid, created, frozenset(user_ids), kinds)


def test_identifiers_of_two_customers_merge_into_the_oldest() -> None:
    customers = {"a": customer("a", NEW, email=1), "b": customer("b", OLD, phone=1)}
    plan = plan_resolution((EMAIL, PHONE, DEVICE), {EMAIL: "a", PHONE: "b"}, customers,
                           DEFAULT_LIMITS)
    assert plan.target == "b"
    assert plan.merges == (("b", "a"),)
    assert plan.attach == (DEVICE,)
    assert plan.refusals == ()


def test_a_customer_with_a_user_id_survives_even_when_younger() -> None:
    customers = {"a": customer("a", NEW, user_ids=("u-1",)), "b": customer("b", OLD, phone=1)}
    plan = plan_resolution((EMAIL, PHONE), {EMAIL: "a", PHONE: "b"}, customers, DEFAULT_LIMITS)
    assert plan.target == "a" and plan.merges == (("a", "b"),)


def test_two_customers_with_different_user_ids_are_never_merged() -> None:
    customers = {"a": customer("a", OLD, user_ids=("u-1",), email=1),
                 "b": customer("b", NEW, user_ids=("u-2",), phone=1)}
    plan = plan_resolution((EMAIL, PHONE), {EMAIL: "a", PHONE: "b"}, customers, DEFAULT_LIMITS)
    assert plan.target == "a"  # the owner of the higher-priority identifier
    assert plan.merges == ()
    assert [r.customer_id for r in plan.refusals] == ["b"]
    assert "different user ids" in plan.refusals[0].reason


def test_a_new_user_id_never_joins_a_customer_that_has_another() -> None:
    user = IdentityKey(IdentityKind.USER_ID, "u-9")
    customers = {"a": customer("a", OLD, user_ids=("u-1",), email=1)}
    plan = plan_resolution((user, EMAIL), {EMAIL: "a"}, customers, DEFAULT_LIMITS)
    assert plan.target is None
    assert plan.attach == (user,)
    assert [r.customer_id for r in plan.refusals] == ["a"]


def test_a_merge_past_an_identity_limit_is_refused() -> None:
    limits = IdentityLimits(per_kind={IdentityKind.EMAIL: 2})
    customers = {"a": customer("a", OLD, email=2), "b": customer("b", NEW, email=1, phone=1)}
    plan = plan_resolution((EMAIL, PHONE), {EMAIL: "a", PHONE: "b"}, customers, limits)
    assert plan.merges == ()
    assert "3 email identities; the limit is 2" in plan.refusals[0].reason


def test_new_identifiers_past_a_limit_are_not_stored() -> None:
    limits = IdentityLimits(per_kind={IdentityKind.DEVICE_ID: 1})
    customers = {"a": customer("a", OLD, email=1, device_id=1)}
    plan = plan_resolution((EMAIL, DEVICE), {EMAIL: "a"}, customers, limits)
    assert plan.attach == () and plan.dropped == (DEVICE,)


def test_customers_that_absorbed_too_many_merge_no_more() -> None:
    limits = IdentityLimits(per_kind={}, max_merges=3)
    survivor = CustomerSummary("a", OLD, frozenset(), Counter(), merges_absorbed=2)
    loser = CustomerSummary("b", NEW, frozenset(), Counter(), merges_absorbed=1)
    assert plan_merge(survivor, loser, limits) == "merged customer would exceed 3 merges"
