"""Deciding merges: who survives, and when a merge must be refused.

When one request's identifiers point at several customers they are the same person, and
the suite merges them, except where merge protection says the evidence is unsafe:

- **Authoritative ids.** Two customers that each carry a user id (your systems' own customer
  id), and different ones, are never merged: they are two people whatever else they share
  (a family email, a shared device). Likewise a request whose user id is new is never
  folded into a customer that already has another user id.
- **Limits.** A merge is refused when the merged customer would hold more identities of one
  kind than configured (`IdentityLimits`), or has already absorbed `max_merges` customers:
  runaway merges through a shared or junk identifier are the failure CDPs are known for.

Survivor rule: the customer carrying a user id survives; otherwise the oldest (created
first); ties go to the smaller customer id. The survivor keeps its id; the others become
merged ids of it, and every merge is logged so it can be undone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from cdp_identity.domain.identifiers import IdentityKey, IdentityKind


@dataclass(frozen=True)
class IdentityLimits:
    per_kind: dict[IdentityKind, int]
    max_merges: int = 100

    def limit(self, kind: IdentityKind) -> int:
        return self.per_kind.get(kind, 1_000_000)


DEFAULT_LIMITS = IdentityLimits(
    per_kind={
        IdentityKind.USER_ID: 1,
        IdentityKind.EMAIL: 5,
        IdentityKind.PHONE: 5,
        IdentityKind.PLATFORM: 25,
        IdentityKind.DEVICE_ID: 25,
        IdentityKind.ANONYMOUS_ID: 100,
        IdentityKind.COOKIE: 100,
    },
    max_merges=100,
)


@dataclass(frozen=True)
class CustomerSummary:
    """What merge decisions need to know about one customer."""

    customer_id: str
    created_at: datetime
    user_ids: frozenset[str]
    kind_counts: Counter[IdentityKind] = field(default_factory=Counter)
    merges_absorbed: int = 0

    def survivor_order(self) -> tuple[int, datetime, str]:
        return (0 if self.user_ids else 1, self.created_at, self.customer_id)


@dataclass(frozen=True)
class Refusal:
    customer_id: str
    reason: str


@dataclass(frozen=True)
class ResolutionPlan:
    """What one resolution will do.

    `target` is the customer the request resolves to, or None for a new one; `merges` lists
    (survivor, loser) pairs to apply in order; `attach` the request's unowned keys to store on
    the target; `dropped` unowned keys not stored because of a limit.
    """

    target: str | None
    merges: tuple[tuple[str, str], ...]
    attach: tuple[IdentityKey, ...]
    dropped: tuple[IdentityKey, ...]
    refusals: tuple[Refusal, ...]


def _conflict(survivor: CustomerSummary, loser: CustomerSummary,
              limits: IdentityLimits) -> str | None:
    if survivor.user_ids and loser.user_ids and survivor.user_ids != loser.user_ids:
        return "the customers carry different user ids"
    for kind, count in loser.kind_counts.items():
        if kind is IdentityKind.USER_ID:
            continue
        total = survivor.kind_counts.get(kind, 0) + count
        if total > limits.limit(kind):
            return (f"merged customer would hold {total} {kind.value} identities; "
                    f"the limit is {limits.limit(kind)}")
    if survivor.merges_absorbed + 1 + loser.merges_absorbed > limits.max_merges:
        return f"merged customer would exceed {limits.max_merges} merges"
    return None


def _combined(survivor: CustomerSummary, loser: CustomerSummary) -> CustomerSummary:
    return CustomerSummary(
        customer_id=survivor.customer_id,
        created_at=survivor.created_at,
        user_ids=survivor.user_ids | loser.user_ids,
        kind_counts=survivor.kind_counts + loser.kind_counts,
        merges_absorbed=survivor.merges_absorbed + 1 + loser.merges_absorbed,
    )


def choose_survivor(customers: list[CustomerSummary]) -> CustomerSummary:
    return min(customers, key=CustomerSummary.survivor_order)


def plan_merge(survivor: CustomerSummary, loser: CustomerSummary,
               limits: IdentityLimits) -> str | None:
    """None when `loser` may be merged into `survivor`, else the reason it may not."""
    return _conflict(survivor, loser, limits)


def plan_resolution(
    keys: tuple[IdentityKey, ...],
    owners: dict[IdentityKey, str],
    customers: dict[str, CustomerSummary],
    limits: IdentityLimits,
) -> ResolutionPlan:
    """Plans one resolution from the request's keys (in match priority) and their owners.

    The owner of the highest-priority matched key anchors the person; every other owner
    joins it unless merge protection refuses. The survivor rule then picks which id the
    merged customer keeps.
    """
    unowned = tuple(key for key in keys if key not in owners)
    request_has_new_user_id = any(
        key.kind is IdentityKind.USER_ID for key in unowned
    )
    refusals: list[Refusal] = []
    # Owners in the order of the best key they own, which `keys` already is.
    involved = [customers[cid] for cid in dict.fromkeys(owners[k] for k in keys if k in owners)]
    if request_has_new_user_id:
        # A user id nobody has yet: customers with another user id are other people,
        # whatever else the request shares with them.
        refusals.extend(Refusal(c.customer_id, "the request carries a different user id")
                        for c in involved if c.user_ids)
        involved = [c for c in involved if not c.user_ids]
    if not involved:
        attach, dropped = within_limits(unowned, Counter(), limits)
        return ResolutionPlan(None, (), attach, dropped, tuple(refusals))
    group = [involved[0]]
    merged = involved[0]
    for other in involved[1:]:
        reason = _conflict(merged, other, limits)
        if reason is None:
            group.append(other)
            merged = _combined(merged, other)
        else:
            refusals.append(Refusal(other.customer_id, reason))
    survivor = choose_survivor(group)
    merges = tuple((survivor.customer_id, c.customer_id) for c in group if c is not survivor)
    attach, dropped = within_limits(unowned, merged.kind_counts, limits)
    return ResolutionPlan(survivor.customer_id, merges, attach, dropped, tuple(refusals))


def within_limits(
    keys: tuple[IdentityKey, ...], counts: Counter[IdentityKind], limits: IdentityLimits
) -> tuple[tuple[IdentityKey, ...], tuple[IdentityKey, ...]]:
    kept: list[IdentityKey] = []
    dropped: list[IdentityKey] = []
    running = Counter(counts)
    for key in keys:
        if running[key.kind] + 1 > limits.limit(key.kind):
            dropped.append(key)
        else:
            running[key.kind] += 1
            kept.append(key)
    return tuple(kept), tuple(dropped)
