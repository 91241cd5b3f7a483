"""Ingesting fragments: validate, resolve who they are about, fold them into profiles.

The path is set-based for batches: one identity call for every fragment that needs
resolving, then one transaction that locks the customers' profile rows (in id order),
loads only the states of the fields the fragments touch, appends the fragments to history,
writes the changed states and profile rows, and queues one `cdp.profile.updated` per
fragment that changed something, all in a fixed number of statements. Nothing in it reads
a customer's history, so a fragment costs the same for a customer with one fragment or with
a thousand (a changed strategy configuration is the exception: the first fragment that
touches a field made under the old configuration rebuilds that customer once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cdp_errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)
from cdp_profile.domain.documents import DocumentLimits, parse_observed_at, split_attributes
from cdp_profile.domain.events import ProfileUpdated
from cdp_profile.domain.ids import check_customer_id
from cdp_profile.domain.model import (
    Fragment,
    IngestFragment,
    IngestResult,
    StoredFragment,
    to_micros,
)
from cdp_profile.domain.profile import ProfileWork, keys_to_load
from cdp_profile.domain.strategies import StrategyBook
from cdp_profile.service_layer.ports import IdentityPort, ProfileUnitOfWork, ResolveRequest

logger = logging.getLogger(__name__)

# A merge landing between reading where a customer lives and locking its row sends the
# transaction round again; more rounds than this means merges are racing us continuously.
MAX_ATTEMPTS = 5

Outcome = IngestResult | DomainError


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IngestLimits:
    document: DocumentLimits
    max_batch: int
    max_clock_skew: timedelta


class FragmentIngestor:
    def __init__(
        self,
        uow_factory: Callable[[], ProfileUnitOfWork],
        identity: IdentityPort,
        *,
        book: StrategyBook,
        platforms: frozenset[str],
        limits: IngestLimits,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow_factory = uow_factory
        self._identity = identity
        self._book = book
        self._platforms = platforms
        self._limits = limits
        self._clock = clock

    def validate(self, command: IngestFragment, now: datetime) -> Fragment:
        """The fragment split into fields, or InvalidArgument with paths relative to it."""
        violations: list[FieldViolation] = []
        source = command.source.strip().lower()
        if not source:
            violations.append(FieldViolation("source", "is required (the platform it came from)"))
        elif source not in self._platforms:
            violations.append(FieldViolation("source", f"unknown platform {source[:40]!r}"))
        customer_id = ""
        if command.customer_id.strip():
            customer_id, violation = check_customer_id(command.customer_id, "customer_id")
            if violation is not None:
                violations.append(violation)
        elif command.identifiers.is_empty():
            violations.append(
                FieldViolation("identifiers", "give a customer_id or at least one identifier")
            )
        observed_at, violation = parse_observed_at(
            command.observed_at, now=now, max_skew=self._limits.max_clock_skew
        )
        if violation is not None:
            violations.append(violation)
        leaves, problems = split_attributes(
            command.attributes,
            command.attributes_size,
            book=self._book,
            limits=self._limits.document,
        )
        violations.extend(problems)
        if violations or observed_at is None:
            raise InvalidArgument(violations)
        return Fragment(
            source=source,
            customer_id=customer_id,
            identifiers=command.identifiers,
            attributes=command.attributes,
            observed_at=observed_at,
            leaves=leaves,
        )

    async def ingest_one(self, command: IngestFragment) -> IngestResult:
        (outcome,) = await self._ingest([command], ["fragment"])
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def check_batch_size(self, count: int) -> None:
        """InvalidArgument when a batch has more fragments than one call may carry."""
        if count > self._limits.max_batch:
            raise InvalidArgument.single(
                "fragments", f"has {count:,} entries; the limit is {self._limits.max_batch:,}"
            )

    async def ingest_many(self, commands: Sequence[IngestFragment]) -> list[Outcome]:
        """One outcome per command, in order; a bad fragment never fails the others."""
        self.check_batch_size(len(commands))
        return await self._ingest(commands, [f"fragments[{i}]" for i in range(len(commands))])

    async def _ingest(self, commands: Sequence[IngestFragment], where: list[str]) -> list[Outcome]:
        now = self._clock()
        outcomes: dict[int, Outcome] = {}
        fragments: dict[int, Fragment] = {}
        for index, command in enumerate(commands):
            try:
                fragments[index] = self.validate(command, now)
            except InvalidArgument as error:
                outcomes[index] = error.under(where[index])
        await self._resolve(fragments, outcomes, where)
        if fragments:
            outcomes.update(await self._store(fragments, where, now))
        return [outcomes[index] for index in range(len(commands))]

    async def _resolve(
        self, fragments: dict[int, Fragment], outcomes: dict[int, Outcome], where: list[str]
    ) -> None:
        """Gives every fragment without a customer id one, in one identity call."""
        needing = [index for index, fragment in fragments.items() if not fragment.customer_id]
        if not needing:
            return
        requests = [
            ResolveRequest(fragments[index].identifiers, fragments[index].source)
            for index in needing
        ]
        try:
            resolved = await self._identity.resolve(requests)
        except Unavailable as error:
            for index in needing:
                outcomes[index] = error
                del fragments[index]
            return
        for index, result in zip(needing, resolved, strict=True):
            if isinstance(result, InvalidArgument):
                outcomes[index] = result.under(where[index])
                del fragments[index]
            elif isinstance(result, DomainError):
                outcomes[index] = result
                del fragments[index]
            else:
                fragments[index] = fragments[index].resolved(result)

    async def _store(
        self, fragments: dict[int, Fragment], where: list[str], now: datetime
    ) -> dict[int, Outcome]:
        redirect: dict[str, str] = {}
        for _ in range(MAX_ATTEMPTS):
            async with self._uow_factory() as uow:
                outcomes = await self._store_once(uow, fragments, where, now, redirect)
                if outcomes is not None:
                    await uow.commit()
                    return outcomes
        raise Unavailable(
            f"ingestion conflicted with concurrent merges {MAX_ATTEMPTS} times; retry"
        )

    async def _store_once(
        self,
        uow: ProfileUnitOfWork,
        fragments: dict[int, Fragment],
        where: list[str],
        now: datetime,
        redirect: dict[str, str],
    ) -> dict[int, Outcome] | None:
        """One attempt; None when a merge moved a customer since `redirect` was read."""
        target = {
            index: redirect.get(f.customer_id, f.customer_id) for index, f in fragments.items()
        }
        heads = await uow.profiles.lock_profiles(set(target.values()), now)
        merged = [customer for customer, head in heads.items() if head.merged_into]
        if merged:
            # The fragments belong to the survivors now; they keep `ingested_for`, so an
            # unmerge hands them back.
            redirect.update(await uow.profiles.survivors(merged))
            return None
        outcomes: dict[int, Outcome] = {}
        for index in list(target):
            if heads[target[index]].forgotten:
                outcomes[index] = FailedPrecondition(
                    f"customer {target[index]} was forgotten (erased); its profile cannot be "
                    "written again",
                    reason="CUSTOMER_FORGOTTEN",
                )
                del target[index]
        wanted: dict[str, set[str]] = {}
        for index, customer in target.items():
            paths = keys_to_load(fragments[index].paths)
            if customer in wanted:
                wanted[customer] |= paths
            else:
                wanted[customer] = paths
        works = {
            customer: ProfileWork(heads[customer], self._book, fields)
            for customer, fields in (await uow.profiles.load_fields(wanted)).items()
        }
        for work in works.values():
            if work.stale_fields():
                await self._rebuild_for_new_configuration(uow, work, now)
        allocated = iter(await uow.profiles.allocate_fragments(len(target)))
        stored: list[StoredFragment] = []
        for index in sorted(target):
            fragment = fragments[index]
            work = works[target[index]]
            seq, fragment_id = next(allocated)
            try:
                applied = work.apply(
                    fragment.leaves,
                    source=fragment.source,
                    at=to_micros(fragment.observed_at),
                    seq=seq,
                    field_prefix=f"{where[index]}.attributes",
                )
            except InvalidArgument as error:
                outcomes[index] = error
                continue
            stored.append(
                StoredFragment(
                    id=fragment_id,
                    seq=seq,
                    customer_id=work.customer_id,
                    ingested_for=fragment.customer_id,
                    source=fragment.source,
                    observed_at=fragment.observed_at,
                    received_at=now,
                    attributes=fragment.attributes,
                )
            )
            outcomes[index] = IngestResult(
                customer_id=work.customer_id,
                fragment_id=fragment_id,
                changed_fields=tuple(change.path for change in applied.changes),
                profile_version=applied.version,
            )
            if applied.changes:
                uow.publish_event(
                    ProfileUpdated(
                        customer_id=work.customer_id,
                        version=applied.version,
                        changes=applied.changes,
                        attributes=work.document,
                        occurred_at=now,
                    )
                )
        await uow.profiles.add_fragments(stored)
        await uow.profiles.save(list(works.values()), now)
        return outcomes

    async def _rebuild_for_new_configuration(
        self, uow: ProfileUnitOfWork, work: ProfileWork, now: datetime
    ) -> None:
        stale = work.stale_fields()
        logger.info(
            "rebuilding a profile from history: %d field(s) were resolved under another "
            "strategy configuration",
            len(stale),
            extra={"customer_id": work.customer_id},
        )
        changes = work.rebuild(await uow.profiles.history(work.customer_id))
        if changes:
            uow.publish_event(
                ProfileUpdated(work.customer_id, work.version, changes, work.document, now)
            )
