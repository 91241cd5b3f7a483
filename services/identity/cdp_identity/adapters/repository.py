"""The identity repository over PostgreSQL.

Lookups and inserts are set-based: one statement for any number of identifiers, with the
keys passed as parallel arrays through `unnest`, so a request costs the same few round trips
whether it carries one identifier or twenty.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from cdp_identity.adapters.tables import SCHEMA, customers, identities
from cdp_identity.domain.identifiers import IdentityKey, IdentityKind
from cdp_identity.domain.model import IdentityMap, IdentityStatus, StoredIdentity

_FIND_OWNERS = text(
    f"""
    SELECT i.kind, i.platform, i.value, i.customer_id::text AS customer_id
    FROM {SCHEMA}.identities AS i
    JOIN unnest(CAST(:kinds AS text[]), CAST(:platforms AS text[]), CAST(:ids AS text[]))
         AS k(kind, platform, value)
      ON i.kind = k.kind AND i.platform = k.platform AND i.value = k.value
    """
)

_ATTACH = text(
    f"""
    INSERT INTO {SCHEMA}.identities
        (customer_id, kind, platform, value, status, confidence, source_platform,
         first_seen_at, last_verified_at)
    SELECT CAST(:customer_id AS uuid), k.kind, k.platform, k.value, 'active', 1.0,
           :source_platform, :now, :now
    FROM unnest(CAST(:kinds AS text[]), CAST(:platforms AS text[]), CAST(:ids AS text[]))
         AS k(kind, platform, value)
    ON CONFLICT (kind, platform, value) DO NOTHING
    RETURNING kind, platform, value
    """
)

_MARK_VERIFIED = text(
    f"""
    UPDATE {SCHEMA}.identities AS i SET last_verified_at = :now
    FROM unnest(CAST(:kinds AS text[]), CAST(:platforms AS text[]), CAST(:ids AS text[]))
         AS k(kind, platform, value)
    WHERE i.kind = k.kind AND i.platform = k.platform AND i.value = k.value
    """
)


def _arrays(keys: Sequence[IdentityKey]) -> dict[str, list[str]]:
    return {
        "kinds": [key.kind.value for key in keys],
        "platforms": [key.platform for key in keys],
        "ids": [key.value for key in keys],
    }


def _key(kind: str, platform: str, value: str) -> IdentityKey:
    return IdentityKey(IdentityKind(kind), value, platform)


class SqlIdentityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find_owners(self, keys: Sequence[IdentityKey]) -> dict[IdentityKey, str]:
        if not keys:
            return {}
        rows = await self._session.execute(_FIND_OWNERS, _arrays(keys))
        return {_key(r.kind, r.platform, r.value): r.customer_id for r in rows}

    async def create_customer(self, now: datetime) -> str:
        customer_id = str(uuid.uuid4())
        await self._session.execute(
            customers.insert().values(
                id=customer_id, status="active", created_at=now, updated_at=now
            )
        )
        return customer_id

    async def attach(
        self,
        customer_id: str,
        keys: Sequence[IdentityKey],
        *,
        source_platform: str,
        now: datetime,
    ) -> set[IdentityKey]:
        if not keys:
            return set()
        rows = await self._session.execute(
            _ATTACH,
            {
                **_arrays(keys),
                "customer_id": customer_id,
                "source_platform": source_platform,
                "now": now,
            },
        )
        stored = {_key(r.kind, r.platform, r.value) for r in rows}
        if stored:
            await self._session.execute(
                customers.update().where(customers.c.id == customer_id).values(updated_at=now)
            )
        return stored

    async def mark_verified(self, keys: Sequence[IdentityKey], now: datetime) -> None:
        if keys:
            await self._session.execute(_MARK_VERIFIED, {**_arrays(keys), "now": now})

    async def identity_map(self, customer_id: str) -> IdentityMap | None:
        customer = (
            await self._session.execute(select(customers).where(customers.c.id == customer_id))
        ).first()
        if customer is None:
            return None
        rows = await self._session.execute(
            select(identities)
            .where(identities.c.customer_id == customer_id)
            .order_by(identities.c.id)
        )
        stored = tuple(
            StoredIdentity(
                key=_key(row.kind, row.platform, row.value),
                customer_id=row.customer_id,
                status=IdentityStatus(row.status),
                confidence=row.confidence,
                source_platform=row.source_platform,
                first_seen_at=row.first_seen_at,
                last_verified_at=row.last_verified_at,
            )
            for row in rows
        )
        return IdentityMap(
            customer_id=customer.id,
            identities=stored,
            created_at=customer.created_at,
            updated_at=customer.updated_at,
        )
