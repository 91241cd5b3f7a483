"""Resolving identifiers to customers, merging, unmerging and forgetting, under concurrency.

Uniqueness lives in the database: one row per normalised identifier (kind, platform,
value), unique. Every write runs in one transaction that first locks the customers it will
touch (in id order, so concurrent writers never deadlock on them) and re-checks them. Two
requests creating the same new customer at once both insert; the second one's insert waits
for the first to commit, then finds the identifier taken (ON CONFLICT DO NOTHING returns
nothing), so its transaction rolls back and the resolution runs again, this time finding the
first one's customer. A customer merged away between lookup and lock sends the resolution
round again the same way. No Python lock is involved, so this holds across replicas.

Reads that change nothing take a shortcut: when every identifier is already stored for one
customer and was verified recently, the answer comes from one pooled query, no transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeVar

import asyncpg
from opentelemetry import trace

from cdp_db import Database, TracedConnection
from cdp_errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from cdp_identity.adapters.repository import SqlIdentityRepository, find_owners
from cdp_identity.domain.events import (
    CustomerCreated,
    CustomerForgotten,
    CustomersMerged,
    CustomersUnmerged,
)
from cdp_identity.domain.identifiers import (
    KIND_NAME,
    NO_BLOCKED_VALUES,
    BlockedValues,
    IdentityKey,
    IdentityKind,
    normalize_identifiers,
)
from cdp_identity.domain.matching import (
    DEFAULT_ODDS,
    NO_ATTRIBUTES,
    PersonAttributes,
    Scorer,
    blocking_keys,
    normalize_attributes,
)
from cdp_identity.domain.merging import (
    DEFAULT_LIMITS,
    IdentityLimits,
    ResolutionPlan,
    choose_survivor,
    plan_merge,
    plan_resolution,
    within_limits,
)
from cdp_identity.domain.model import (
    CustomerStatus,
    Forgotten,
    IdentityMap,
    MatchMethod,
    MergeOutcome,
    MergeRecord,
    Resolution,
    ResolveIdentity,
)
from cdp_identity.service_layer.ports import IdentityUnitOfWork

logger = logging.getLogger(__name__)

T = TypeVar("T")

# 1.0 means certain, which only an exact identifier is: strong attribute evidence reports just
# below it, so callers can tell a match on evidence from a match on an identifier.
MAX_PROBABILISTIC_CONFIDENCE = 0.9999

MAX_ATTEMPTS = 12
# A batch is validated and looked up in this many slices (see `_resolve_plain_batch`), each
# of at least MIN_LOOKUP_SLICE items: a few statements per batch, whatever its size.
LOOKUP_SLICES = 4
MIN_LOOKUP_SLICE = 250
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ResolverPolicy:
    default_region: str = "US"
    known_platforms: frozenset[str] = frozenset()
    blocked: BlockedValues = NO_BLOCKED_VALUES
    limits: IdentityLimits = DEFAULT_LIMITS
    match_threshold: float = 0.85
    match_prior: float = 1e-4
    max_candidates: int = 50
    # Repeated resolves of a known identifier only rewrite `last_verified_at` when it is
    # older than this: hot identifiers stay read-only.
    verify_granularity: timedelta = timedelta(hours=1)
    suppression_key: bytes = b"cdp-local-suppression-key"
    scorer: Scorer = field(default_factory=lambda: Scorer(DEFAULT_ODDS))


class _LostRace(Exception):
    """A concurrent writer changed what this attempt read; run it again."""


class _Request(NamedTuple):
    keys: tuple[IdentityKey, ...]
    attributes: PersonAttributes
    source_platform: str
    allow_probabilistic: bool


DETERMINISTIC = MatchMethod.DETERMINISTIC


def parse_customer_id(raw: str, field_name: str) -> str:
    """The canonical form of a customer id, or INVALID_ARGUMENT naming the field."""
    if not raw.strip():
        raise InvalidArgument.single(field_name, "is required")
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise InvalidArgument.single(field_name, "is not a customer id (a UUID)") from None


def _kinds(keys: Sequence[IdentityKey]) -> tuple[str, ...]:
    if len(keys) == 1:
        return (KIND_NAME[keys[0].kind],)
    return tuple(dict.fromkeys(KIND_NAME[k.kind] for k in sorted(keys, key=lambda k: k.priority)))


class IdentityResolver:
    def __init__(
        self,
        database: Database | None,
        uow_factory: Callable[[], IdentityUnitOfWork],
        *,
        policy: ResolverPolicy,
        tracer: trace.Tracer,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._database = database
        self._uow_factory = uow_factory
        self._policy = policy
        self._tracer = tracer
        self._clock = clock

    # --- validation -----------------------------------------------------------------------

    def _validate(self, command: ResolveIdentity) -> _Request:
        """The normalised request, or INVALID_ARGUMENT naming every bad field (batches nest
        the field paths under the item's index only when an item fails)."""
        normalized, violations = normalize_identifiers(
            command.identifiers,
            default_region=self._policy.default_region,
            known_platforms=self._policy.known_platforms,
            blocked=self._policy.blocked,
        )
        attributes = command.attributes
        if attributes is not NO_ATTRIBUTES:
            attributes, attribute_violations = normalize_attributes(attributes)
            violations.extend(attribute_violations)
        source = command.source_platform
        if source and source not in self._policy.known_platforms:
            violations.append(FieldViolation(
                "source_platform", f"unknown platform {source[:40]!r}"
            ))
        if violations:
            raise InvalidArgument(violations)
        return _Request(normalized.keys, attributes, source, command.allow_probabilistic)

    # --- resolve --------------------------------------------------------------------------

    async def resolve(self, command: ResolveIdentity) -> Resolution:
        request = self._validate(command)
        if request.attributes.is_empty():
            shortcut = await self._read_only(request)
            if shortcut is not None:
                return shortcut
        return await self._with_retries(lambda uow: self._resolve_once(uow, request))

    async def _read_only(self, request: _Request) -> Resolution | None:
        """The answer without a transaction, when nothing needs writing."""
        if self._database is None:
            return None
        stale_before = self._clock() - self._policy.verify_granularity
        async with self._database.pool.acquire() as connection:
            found = await find_owners(TracedConnection(connection, self._tracer), request.keys,
                                      stale_before)
        if len(found) != len(request.keys):
            return None
        owners = {owner for owner, _ in found.values()}
        if len(owners) != 1 or any(stale for _, stale in found.values()):
            return None
        return Resolution(owners.pop(), MatchMethod.DETERMINISTIC, 1.0, _kinds(request.keys),
                          created=False)

    async def _with_retries(
        self, attempt: Callable[[IdentityUnitOfWork], Awaitable[T]]
    ) -> T:
        for number in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._uow_factory() as uow:
                    result = await attempt(uow)
                    await uow.commit()
                    return result
            except _LostRace:
                logger.debug("identity write lost a race, retrying (attempt %d)", number)
            except _RETRYABLE as error:
                logger.info("identity write retried after %s", type(error).__name__)
        raise Unavailable(
            f"identity writes conflicted with concurrent ones {MAX_ATTEMPTS} times; retry"
        )

    def _digest(self, key: IdentityKey) -> str:
        message = f"{key.kind.value}|{key.platform}|{key.value}".encode()
        return hmac.new(self._policy.suppression_key, message, hashlib.sha256).hexdigest()

    async def _refuse_suppressed(self, repo: SqlIdentityRepository,
                                 keys: Sequence[IdentityKey]) -> None:
        digests = {self._digest(key): key for key in keys}
        hits = await repo.suppressed(list(digests))
        if hits:
            kinds = ", ".join(sorted({digests[d].kind.value for d in hits}))
            raise FailedPrecondition(
                f"the {kinds} of this request belonged to a customer who was forgotten "
                "(erasure request); it is not stored again",
                reason="IDENTIFIER_SUPPRESSED",
            )

    async def _resolve_once(self, uow: IdentityUnitOfWork, request: _Request) -> Resolution:
        repo = uow.identities
        now = self._clock()
        stale_before = now - self._policy.verify_granularity
        verified = await repo.find_owners(request.keys, stale_before)
        owners = {key: owner for key, (owner, _) in verified.items()}
        summaries = await repo.lock_customers(owners.values())
        if any(owner not in summaries for owner in owners.values()):
            raise _LostRace()
        plan = plan_resolution(request.keys, owners, summaries, self._policy.limits)
        await self._refuse_suppressed(repo, plan.attach)
        if plan.target is None:
            return await self._resolve_unmatched(uow, request, plan, bool(owners), now)
        outcome = await self._apply_merges(uow, plan, owners, now)
        stored = await repo.attach([plan.target] * len(plan.attach), plan.attach,
                                   sources=[request.source_platform] * len(plan.attach), now=now)
        if len(stored) != len(plan.attach):
            raise _LostRace()
        group = {plan.target, *(loser for _, loser in plan.merges)}
        matched = [key for key, owner in owners.items() if owner in group]
        await repo.mark_verified([k for k in matched if verified[k][1]], now)
        if not request.attributes.is_empty():
            await self._store_attributes(repo, plan.target, request.attributes, now)
        if plan.attach or plan.merges:
            await repo.touch_customers([plan.target], now)
        return Resolution(plan.target, MatchMethod.DETERMINISTIC, 1.0, _kinds(matched),
                          created=False, merge=outcome)

    async def _apply_merges(self, uow: IdentityUnitOfWork, plan: ResolutionPlan,
                            owners: dict[IdentityKey, str], now: datetime) -> MergeOutcome:
        merge_ids: list[str] = []
        for survivor, loser in plan.merges:
            evidence = _kinds([k for k, o in owners.items() if o in (survivor, loser)])
            reason = "identifiers of one request pointed at both customers"
            merge_id = await uow.identities.merge(survivor, loser, reason=reason,
                                                  matched_on=evidence, now=now)
            uow.publish_event(CustomersMerged(merge_id, survivor, loser, evidence, reason, now))
            merge_ids.append(merge_id)
        refused = plan.refusals
        return MergeOutcome(
            merge_ids=tuple(merge_ids),
            merged_customer_ids=tuple(loser for _, loser in plan.merges),
            refused=bool(refused),
            refusal_reason="; ".join(f"not merged with {r.customer_id}: {r.reason}"
                                     for r in refused),
        )

    async def _resolve_unmatched(self, uow: IdentityUnitOfWork, request: _Request,
                                 plan: ResolutionPlan, any_owner: bool,
                                 now: datetime) -> Resolution:
        repo = uow.identities
        refusal = MergeOutcome(
            refused=bool(plan.refusals),
            refusal_reason="; ".join(f"not merged with {r.customer_id}: {r.reason}"
                                     for r in plan.refusals),
        )
        if request.allow_probabilistic and not any_owner and not request.attributes.is_empty():
            matched = await self._probabilistic(uow, request, plan, now)
            if matched is not None:
                return matched
        (customer_id,) = await repo.create_customers(1, now)
        stored = await repo.attach([customer_id] * len(plan.attach), plan.attach,
                                   sources=[request.source_platform] * len(plan.attach), now=now)
        if len(stored) != len(plan.attach):
            raise _LostRace()
        if not request.attributes.is_empty():
            await self._store_attributes(repo, customer_id, request.attributes, now)
        uow.publish_event(CustomerCreated(customer_id, _kinds(plan.attach),
                                          request.source_platform, now))
        return Resolution(customer_id, MatchMethod.NEW, 1.0, (), created=True, merge=refusal)

    async def _probabilistic(self, uow: IdentityUnitOfWork, request: _Request,
                             plan: ResolutionPlan, now: datetime) -> Resolution | None:
        repo = uow.identities
        candidates = await repo.candidates(blocking_keys(request.attributes),
                                           self._policy.max_candidates)
        if not candidates:
            return None
        scored = sorted(
            ((self._policy.scorer.score(request.attributes, attrs), cid)
             for cid, attrs in candidates.items()),
            key=lambda pair: (-pair[0].confidence, pair[1]),
        )
        best, customer_id = scored[0]
        if best.confidence < self._policy.match_threshold:
            return None
        confidence = min(round(best.confidence, 6), MAX_PROBABILISTIC_CONFIDENCE)
        summaries = await repo.lock_customers([customer_id])
        summary = summaries.get(customer_id)
        if summary is None:
            raise _LostRace()
        request_user_ids = {k.value for k in plan.attach if k.kind is IdentityKind.USER_ID}
        if summary.user_ids and request_user_ids and request_user_ids != summary.user_ids:
            return None  # a different authoritative id: another person however alike
        keep, _ = within_limits(
            tuple(k for k in plan.attach
                  if k.kind is not IdentityKind.USER_ID or not summary.user_ids),
            summary.kind_counts, self._policy.limits,
        )
        stored = await repo.attach([customer_id] * len(keep), keep,
                                   sources=[request.source_platform] * len(keep), now=now,
                                   confidence=confidence)
        if len(stored) != len(keep):
            raise _LostRace()
        existing = (await repo.attributes_of([customer_id])).get(customer_id)
        merged_attributes = (existing or PersonAttributes()).updated_with(request.attributes)
        await repo.save_attributes(customer_id, merged_attributes,
                                   blocking_keys(merged_attributes), now)
        await repo.touch_customers([customer_id], now)
        return Resolution(customer_id, MatchMethod.PROBABILISTIC, confidence, best.agreeing,
                          created=False)

    async def _store_attributes(self, repo: SqlIdentityRepository, customer_id: str,
                                attributes: PersonAttributes, now: datetime) -> None:
        existing = (await repo.attributes_of([customer_id])).get(customer_id)
        merged = (existing or PersonAttributes()).updated_with(attributes)
        if merged != existing:
            await repo.save_attributes(customer_id, merged, blocking_keys(merged), now)

    # --- batch ----------------------------------------------------------------------------

    async def resolve_batch(
        self, commands: Sequence[ResolveIdentity]
    ) -> list[Resolution | DomainError]:
        """One result per command, in order; set-based for the common cases.

        Known identifiers are answered from bulk lookups, and wholly new identifier sets are
        created with one insert; only items needing a decision (a merge, an identifier
        partly known, attributes to match or store) go through the one-at-a-time path.
        """
        results: list[Resolution | DomainError | None] = [None] * len(commands)
        if self._database is None:
            requests = self._validate_items(commands, range(len(commands)), results)
            individual = list(requests)
        else:
            requests, individual = await self._resolve_plain_batch(commands, results)
        for index in sorted(individual):
            request = requests[index]

            async def one(uow: IdentityUnitOfWork, request: _Request = request) -> Resolution:
                return await self._resolve_once(uow, request)

            try:
                results[index] = await self._with_retries(one)
            except (InvalidArgument, FailedPrecondition, NotFound) as error:
                results[index] = error
        return [r if r is not None else Unavailable("not resolved") for r in results]

    def _validate_items(
        self, commands: Sequence[ResolveIdentity], indexes: range,
        results: list[Resolution | DomainError | None],
    ) -> dict[int, _Request]:
        """The valid items among `indexes`; each invalid one's error goes to `results`."""
        requests: dict[int, _Request] = {}
        validate = self._validate
        for index in indexes:
            try:
                requests[index] = validate(commands[index])
            except InvalidArgument as error:
                results[index] = error.under(f"items[{index}]")
        return requests

    async def _resolve_plain_batch(
        self, commands: Sequence[ResolveIdentity], results: list[Resolution | DomainError | None]
    ) -> tuple[dict[int, _Request], list[int]]:
        """Validates every item and answers what it can in bulk; returns the valid requests
        and the indexes left for the one-at-a-time path.

        Items are validated a slice at a time, and each slice's lookup runs in PostgreSQL
        while the next slice is validated here: the batch costs about the larger of the two
        rather than their sum.
        """
        assert self._database is not None
        now = self._clock()
        stale_before = now - self._policy.verify_granularity
        requests: dict[int, _Request] = {}
        plain: dict[int, _Request] = {}
        found: dict[IdentityKey, tuple[str, bool]] = {}
        slice_size = max(MIN_LOOKUP_SLICE, -(-len(commands) // LOOKUP_SLICES))
        async with self._database.pool.acquire() as raw:
            connection = TracedConnection(raw, self._tracer)
            lookup: asyncio.Task[dict[IdentityKey, tuple[str, bool]]] | None = None
            try:
                for start in range(0, len(commands), slice_size):
                    valid = self._validate_items(
                        commands, range(start, min(start + slice_size, len(commands))), results
                    )
                    requests.update(valid)
                    valid_plain = {i: r for i, r in valid.items() if r.attributes.is_empty()}
                    plain.update(valid_plain)
                    if lookup is not None:
                        found.update(await lookup)
                    slice_keys = list({key for request in valid_plain.values()
                                       for key in request.keys})
                    lookup = asyncio.create_task(
                        find_owners(connection, slice_keys, stale_before)
                    )
                    # One turn of the loop sends the lookup before the next slice is validated.
                    await asyncio.sleep(0)
                if lookup is not None:
                    found.update(await lookup)
            finally:
                if lookup is not None and not lookup.done():
                    lookup.cancel()  # only when validation itself failed unexpectedly
                    with contextlib.suppress(asyncio.CancelledError):
                        await lookup
            stale = [key for key, (_, is_stale) in found.items() if is_stale]
            if stale:
                await SqlIdentityRepository(connection).mark_verified(stale, now)
        leftover = [i for i in requests if i not in plain]
        new_items: dict[int, _Request] = {}
        for index, request in plain.items():
            keys = request.keys
            if len(keys) == 1:  # the common case, without building sets
                hit = found.get(keys[0])
                if hit is None:
                    new_items[index] = request
                else:
                    results[index] = Resolution(hit[0], DETERMINISTIC, 1.0,
                                                (KIND_NAME[keys[0].kind],), created=False)
                continue
            owners = {found[key][0] for key in keys if key in found}
            if len(owners) == 1 and all(key in found for key in keys):
                results[index] = Resolution(owners.pop(), MatchMethod.DETERMINISTIC, 1.0,
                                            _kinds(keys), created=False)
            elif not owners:
                new_items[index] = request
            else:
                leftover.append(index)
        if new_items:
            leftover += await self._create_in_bulk(new_items, results, now)
        return requests, leftover

    async def _create_in_bulk(
        self, items: dict[int, _Request], results: list[Resolution | DomainError | None],
        now: datetime,
    ) -> list[int]:
        groups = _groups_sharing_keys(items)
        plans: list[tuple[list[int], tuple[IdentityKey, ...], str]] = []
        leftover: list[int] = []
        for members in groups:
            keys = tuple(sorted({k for i in members for k in items[i].keys},
                                key=lambda k: (k.priority, k.platform, k.value)))
            if sum(1 for k in keys if k.kind is IdentityKind.USER_ID) > 1:
                leftover.extend(members)  # two user ids: let merge protection decide
                continue
            attach, _ = within_limits(keys, Counter(), self._policy.limits)
            plans.append((members, attach, items[members[0]].source_platform))
        if not plans:
            return leftover
        try:
            async with self._uow_factory() as uow:
                repo = uow.identities
                digests = {self._digest(k): k for _, keys, _ in plans for k in keys}
                suppressed = {digests[d] for d in await repo.suppressed(list(digests))}
                if suppressed:
                    clean = [p for p in plans if not suppressed & set(p[1])]
                    leftover.extend(i for p in plans if suppressed & set(p[1]) for i in p[0])
                    plans = clean
                customer_ids = await repo.create_customers(len(plans), now)
                owners = [cid for cid, (_, keys, _) in zip(customer_ids, plans, strict=True)
                          for _ in keys]
                sources = [source for _, keys, source in plans for _ in keys]
                all_keys = [k for _, plan_keys, _ in plans for k in plan_keys]
                stored = await repo.attach(owners, all_keys, sources=sources, now=now)
                if len(stored) != len(all_keys):
                    raise _LostRace()
                for customer_id, (members, plan_keys, source) in zip(customer_ids, plans,
                                                                     strict=True):
                    uow.publish_event(CustomerCreated(customer_id, _kinds(plan_keys), source, now))
                    first, *others = members
                    results[first] = Resolution(customer_id, MatchMethod.NEW, 1.0, (),
                                                created=True)
                    if not others:
                        continue
                    # Each later item matched on what it shares with the group's other
                    # items, as it would report resolved alone; its new identifiers are
                    # attached, not matched.
                    held_by = Counter(k for i in members for k in items[i].keys)
                    for other in others:
                        shared = [k for k in items[other].keys if held_by[k] > 1]
                        results[other] = Resolution(customer_id, MatchMethod.DETERMINISTIC,
                                                    1.0, _kinds(shared), created=False)
                await uow.commit()
        except (_LostRace, *_RETRYABLE):
            # Someone stored one of these identifiers meanwhile: decide each item alone.
            return leftover + [i for members, _, _ in plans for i in members]
        return leftover

    # --- explicit merges, unmerge, forget ---------------------------------------------------

    async def merge(self, customer_id: str, other_customer_id: str, reason: str) -> MergeRecord:
        first = parse_customer_id(customer_id, "customer_id")
        second = parse_customer_id(other_customer_id, "other_customer_id")
        if first == second:
            raise InvalidArgument.single("other_customer_id", "is the same customer as customer_id")
        reason = reason.strip()[:500] or "requested"

        async def attempt(uow: IdentityUnitOfWork) -> MergeRecord:
            repo = uow.identities
            now = self._clock()
            statuses = await repo.customer_statuses([first, second])
            for cid, name in ((first, "customer_id"), (second, "other_customer_id")):
                if cid not in statuses:
                    raise NotFound("customer", cid)
                if statuses[cid] != CustomerStatus.ACTIVE:
                    raise FailedPrecondition(f"{name} {cid} is {statuses[cid]}, not active",
                                             reason="CUSTOMER_NOT_ACTIVE")
            summaries = await repo.lock_customers([first, second])
            survivor = choose_survivor(list(summaries.values()))
            loser = summaries[second if survivor.customer_id == first else first]
            refusal = plan_merge(survivor, loser, self._policy.limits)
            if refusal is not None:
                raise FailedPrecondition(f"merge refused: {refusal}", reason="MERGE_REFUSED")
            merge_id = await repo.merge(survivor.customer_id, loser.customer_id, reason=reason,
                                        matched_on=("explicit",), now=now)
            uow.publish_event(CustomersMerged(merge_id, survivor.customer_id,
                                              loser.customer_id, ("explicit",), reason, now))
            return MergeRecord(merge_id, survivor.customer_id, loser.customer_id, reason,
                               ("explicit",), now)

        return await self._with_retries(attempt)

    async def unmerge(self, merge_id: str) -> MergeRecord:
        try:
            merge_id = str(uuid.UUID(merge_id.strip()))
        except ValueError:
            raise InvalidArgument.single("merge_id", "is not a merge id (a UUID)") from None

        async def attempt(uow: IdentityUnitOfWork) -> MergeRecord:
            repo = uow.identities
            now = self._clock()
            merge = await repo.lock_merge(merge_id)
            if merge is None:
                raise NotFound("merge", merge_id)
            if merge.unmerged_at is not None:
                raise FailedPrecondition(f"merge {merge_id} was already undone",
                                         reason="ALREADY_UNMERGED")
            statuses = await repo.customer_statuses(
                [merge.survivor_customer_id, merge.merged_customer_id])
            if CustomerStatus.FORGOTTEN in statuses.values():
                raise FailedPrecondition("a customer of this merge was forgotten; "
                                         "nothing is left to restore", reason="FORGOTTEN")
            await repo.unmerge(merge, now)
            restored = (await repo.attributes_of([merge.merged_customer_id])).get(
                merge.merged_customer_id)
            if restored is not None:
                await repo.replace_blocking_keys(merge.merged_customer_id,
                                                 blocking_keys(restored))
            uow.publish_event(CustomersUnmerged(merge_id, merge.survivor_customer_id,
                                                merge.merged_customer_id, now))
            return MergeRecord(merge_id, merge.survivor_customer_id, merge.merged_customer_id,
                               merge.reason, merge.matched_on, merge.merged_at, now)

        return await self._with_retries(attempt)

    async def forget(self, customer_id: str) -> Forgotten:
        requested = parse_customer_id(customer_id, "customer_id")

        async def attempt(uow: IdentityUnitOfWork) -> Forgotten:
            repo = uow.identities
            now = self._clock()
            root = await repo.active_root(requested)
            if root is None:
                raise NotFound("customer", requested)
            root_id, status = root
            if status == CustomerStatus.FORGOTTEN:
                return Forgotten(root_id, 0, ())
            tree = await repo.merged_tree(root_id)
            await repo.customer_statuses(tree)  # lock them
            keys = await repo.identities_of(tree)
            digests = [(self._digest(key), key.kind.value) for key in keys]
            email_hashes = tuple(sorted(
                hashlib.md5(key.value.encode(), usedforsecurity=False).hexdigest()
                for key in keys if key.kind is IdentityKind.EMAIL
            ))
            deleted = await repo.forget(tree, digests, now)
            merged = tuple(cid for cid in tree if cid != root_id)
            uow.publish_event(CustomerForgotten(root_id, merged, email_hashes, now))
            return Forgotten(root_id, deleted, merged)

        return await self._with_retries(attempt)

    # --- reading ----------------------------------------------------------------------------

    async def identity_map(self, customer_id: str) -> IdentityMap:
        requested = parse_customer_id(customer_id, "customer_id")
        async with self._uow_factory() as uow:
            root = await uow.identities.active_root(requested)
            if root is None or root[1] == CustomerStatus.FORGOTTEN:
                raise NotFound("customer", requested)
            found = await uow.identities.identity_map(root[0])
        if found is None:
            raise NotFound("customer", requested)
        return found

    async def list_merges(self, customer_id: str) -> list[MergeRecord]:
        requested = parse_customer_id(customer_id, "customer_id")
        async with self._uow_factory() as uow:
            return await uow.identities.list_merges(requested)


def _groups_sharing_keys(items: dict[int, _Request]) -> list[list[int]]:
    """Items of a batch that share an identifier are one person: union-find over keys."""
    parent = {index: index for index in items}

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_with: dict[IdentityKey, int] = {}
    for index, request in items.items():
        for key in request.keys:
            if key in first_with:
                parent[root(index)] = root(first_with[key])
            else:
                first_with[key] = index
    groups: dict[int, list[int]] = {}
    for index in items:
        groups.setdefault(root(index), []).append(index)
    return [sorted(members) for members in groups.values()]

