"""Resolving identifiers to a customer, safely under any concurrency.

Uniqueness lives in the database: one row per normalised identifier (kind, platform,
value), unique. Two requests creating the same new customer at the same moment both insert;
the second one's insert waits for the first to commit and then finds the identifier taken
(ON CONFLICT DO NOTHING returns nothing), so its transaction is rolled back and the whole
resolution runs again, this time finding the first one's customer. No Python lock is
involved, so this holds across processes and replicas.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from cdp_errors import FieldViolation, InvalidArgument, NotFound, Unavailable
from cdp_identity.domain.events import CustomerCreated
from cdp_identity.domain.identifiers import (
    IdentityKey,
    NormalizedIdentifiers,
    normalize_identifiers,
)
from cdp_identity.domain.model import IdentityMap, MatchMethod, Resolution, ResolveIdentity
from cdp_identity.service_layer.ports import IdentityUnitOfWork

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


class IdentityResolver:
    def __init__(
        self,
        uow_factory: Callable[[], IdentityUnitOfWork],
        *,
        default_region: str,
        known_platforms: frozenset[str],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._uow_factory = uow_factory
        self._default_region = default_region
        self._known_platforms = known_platforms
        self._clock = clock

    def normalize(
        self, command: ResolveIdentity, field: str = "identifiers"
    ) -> NormalizedIdentifiers:
        normalized, violations = normalize_identifiers(
            command.identifiers,
            default_region=self._default_region,
            known_platforms=self._known_platforms,
            field=field,
        )
        if command.source_platform and command.source_platform not in self._known_platforms:
            violations.append(
                FieldViolation(
                    "source_platform", f"unknown platform {command.source_platform[:40]!r}"
                )
            )
        if violations:
            raise InvalidArgument(violations)
        return normalized

    async def resolve(self, command: ResolveIdentity) -> Resolution:
        normalized = self.normalize(command)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            async with self._uow_factory() as uow:
                resolution = await self._resolve_once(uow, normalized, command.source_platform)
                if resolution is not None:
                    await uow.commit()
                    return resolution
            logger.debug("identity resolution lost a race, retrying (attempt %d)", attempt)
        raise Unavailable(
            f"identity resolution conflicted with concurrent writes {MAX_ATTEMPTS} times; retry"
        )

    async def _resolve_once(
        self, uow: IdentityUnitOfWork, normalized: NormalizedIdentifiers, source_platform: str
    ) -> Resolution | None:
        """One attempt; None when a concurrent writer took an identifier first."""
        now = self._clock()
        keys = list(normalized.keys)
        owners = await uow.identities.find_owners(keys)
        if not owners:
            customer_id = await uow.identities.create_customer(now)
            stored = await uow.identities.attach(
                customer_id, keys, source_platform=source_platform, now=now
            )
            if len(stored) != len(keys):
                return None
            uow.publish_event(
                CustomerCreated(
                    customer_id=customer_id,
                    identity_types=tuple(sorted({key.kind.value for key in keys})),
                    source_platform=source_platform,
                    occurred_at=now,
                )
            )
            return Resolution(customer_id, MatchMethod.NEW, 1.0, (), created=True)
        # The customer owning the highest-priority matched identifier wins. When the keys point
        # at several customers, only the winner's are confirmed and new keys attach to it;
        # keys owned by others stay where they are (merging is a separate, logged decision).
        best: IdentityKey = min(owners, key=lambda key: key.priority)
        customer_id = owners[best]
        matched = [key for key, owner in owners.items() if owner == customer_id]
        new_keys = [key for key in keys if key not in owners]
        if new_keys:
            stored = await uow.identities.attach(
                customer_id, new_keys, source_platform=source_platform, now=now
            )
            if len(stored) != len(new_keys):
                return None
        await uow.identities.mark_verified(matched, now)
        by_priority = sorted(matched, key=lambda key: key.priority)
        matched_on = tuple(dict.fromkeys(key.kind.value for key in by_priority))
        return Resolution(customer_id, MatchMethod.DETERMINISTIC, 1.0, matched_on, created=False)

    async def identity_map(self, customer_id: str) -> IdentityMap:
        customer_id = parse_customer_id(customer_id, "customer_id")
        async with self._uow_factory() as uow:
            found = await uow.identities.identity_map(customer_id)
        if found is None:
            raise NotFound("customer", customer_id)
        return found


def parse_customer_id(raw: str, field: str) -> str:
    """The canonical form of a customer id, or INVALID_ARGUMENT naming `field`."""
    if not raw.strip():
        raise InvalidArgument.single(field, "is required")
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise InvalidArgument.single(field, "is not a customer id (a UUID)") from None
