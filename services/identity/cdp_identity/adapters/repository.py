"""The identity repository over PostgreSQL, in asyncpg directly (the service's hot path).

Every statement is set-based: keys travel as parallel arrays through `unnest`, so a request
costs the same few round trips whether it carries one identifier or thousands. Statements
run on the connection they are given: a unit of work's (inside its transaction) or a pooled
one for read-only lookups.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from cdp_db import TracedConnection
from cdp_identity.domain.identifiers import KIND_NAME, IdentityKey, IdentityKind
from cdp_identity.domain.matching import PersonAttributes
from cdp_identity.domain.merging import CustomerSummary
from cdp_identity.domain.model import (
    CustomerStatus,
    IdentityMap,
    IdentityStatus,
    MergeRecord,
    StoredIdentity,
)

S = "identity"

_KEYS = "unnest($1::text[], $2::text[], $3::text[]) AS k(kind, platform, value)"

# Rows name the key by its position in the request's arrays (`WITH ORDINALITY`, from 1), so
# the caller's own key objects index the result: no kind, platform and value decoded and
# hashed back into a key per row.
FIND_OWNERS = f"""
    SELECT k.position, i.customer_id::text AS customer_id, i.last_verified_at < $4 AS stale
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
             AS k(kind, platform, value, position)
    JOIN {S}.identities AS i
      ON i.kind = k.kind AND i.platform = k.platform AND i.value = k.value
"""

def key_arrays(keys: Sequence[IdentityKey]) -> tuple[list[str], list[str], list[str]]:
    kind_name = KIND_NAME
    return ([kind_name[k.kind] for k in keys], [k.platform for k in keys],
            [k.value for k in keys])


def to_key(kind: str, platform: str, value: str) -> IdentityKey:
    return IdentityKey(IdentityKind(kind), value, platform)


async def find_owners(
    connection: TracedConnection, keys: Sequence[IdentityKey], stale_before: datetime
) -> dict[IdentityKey, tuple[str, bool]]:
    """Owner of every stored key among `keys`, and whether it was last verified before
    `stale_before`."""
    if not keys:
        return {}
    rows = await connection.fetch(FIND_OWNERS, *key_arrays(keys), stale_before)
    return {keys[position - 1]: (customer_id, stale) for position, customer_id, stale in rows}


class SqlIdentityRepository:
    def __init__(self, connection: TracedConnection) -> None:
        self._db = connection

    async def find_owners(
        self, keys: Sequence[IdentityKey], stale_before: datetime
    ) -> dict[IdentityKey, tuple[str, bool]]:
        return await find_owners(self._db, keys, stale_before)

    async def lock_customers(self, customer_ids: Iterable[str]) -> dict[str, CustomerSummary]:
        """Locks the customers (in id order, so concurrent lockers never deadlock) and
        summarises the active ones; merged or forgotten ones are left out."""
        ids = sorted(set(customer_ids))
        if not ids:
            return {}
        rows = await self._db.fetch(
            f"""SELECT id::text AS id, status, created_at, merges_absorbed FROM {S}.customers
                WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE""",
            ids,
        )
        active = {r["id"]: r for r in rows if r["status"] == CustomerStatus.ACTIVE}
        counts = await self._db.fetch(
            f"""SELECT customer_id::text AS customer_id, kind, count(*) AS n,
                       array_agg(value) FILTER (WHERE kind = 'user_id') AS user_ids
                FROM {S}.identities WHERE customer_id = ANY($1::uuid[])
                GROUP BY customer_id, kind""",
            list(active),
        )
        kinds: dict[str, Counter[IdentityKind]] = {cid: Counter() for cid in active}
        user_ids: dict[str, set[str]] = {cid: set() for cid in active}
        for row in counts:
            kinds[row["customer_id"]][IdentityKind(row["kind"])] = row["n"]
            user_ids[row["customer_id"]].update(row["user_ids"] or ())
        return {
            cid: CustomerSummary(
                customer_id=cid,
                created_at=row["created_at"],
                user_ids=frozenset(user_ids[cid]),
                kind_counts=kinds[cid],
                merges_absorbed=row["merges_absorbed"],
            )
            for cid, row in active.items()
        }

    async def create_customers(self, count: int, now: datetime) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        if ids:
            await self._db.execute(
                f"""INSERT INTO {S}.customers (id, status, created_at, updated_at)
                    SELECT id, 'active', $2, $2 FROM unnest($1::uuid[]) AS id""",
                ids, now,
            )
        return ids

    async def attach(
        self,
        customer_ids: Sequence[str],
        keys: Sequence[IdentityKey],
        *,
        sources: Sequence[str],
        now: datetime,
        confidence: float = 1.0,
    ) -> set[IdentityKey]:
        """Stores key i for customer i, reported by platform i; returns the keys stored (the
        rest already existed)."""
        if not keys:
            return set()
        rows = await self._db.fetch(
            f"""INSERT INTO {S}.identities
                    (customer_id, kind, platform, value, status, confidence, source_platform,
                     first_seen_at, last_verified_at)
                SELECT k.customer_id, k.kind, k.platform, k.value, 'active', $6, k.source, $7, $7
                FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[])
                     AS k(kind, platform, value, customer_id, source)
                ON CONFLICT (kind, platform, value) DO NOTHING
                RETURNING kind, platform, value""",
            *key_arrays(keys), list(customer_ids), list(sources), confidence, now,
        )
        return {to_key(r["kind"], r["platform"], r["value"]) for r in rows}

    async def mark_verified(self, keys: Sequence[IdentityKey], now: datetime) -> None:
        if keys:
            await self._db.execute(
                f"""UPDATE {S}.identities AS i SET last_verified_at = $4 FROM {_KEYS}
                    WHERE i.kind = k.kind AND i.platform = k.platform AND i.value = k.value""",
                *key_arrays(keys), now,
            )

    async def touch_customers(self, customer_ids: Iterable[str], now: datetime) -> None:
        await self._db.execute(
            f"UPDATE {S}.customers SET updated_at = $2 WHERE id = ANY($1::uuid[])",
            sorted(set(customer_ids)), now,
        )

    # --- merges -------------------------------------------------------------------------

    async def merge(
        self, survivor: str, loser: str, *, reason: str, matched_on: Sequence[str], now: datetime
    ) -> str:
        """Moves the loser's identities to the survivor and logs the merge; returns its id."""
        merge_id = str(uuid.uuid4())
        absorbed = await self._db.fetchval(
            f"SELECT merges_absorbed FROM {S}.customers WHERE id = $1::uuid", loser
        )
        await self._db.execute(
            f"""INSERT INTO {S}.merges (id, survivor_id, merged_id, reason, matched_on,
                                       merged_absorbed, merged_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            merge_id, survivor, loser, reason, list(matched_on), absorbed, now,
        )
        await self._db.execute(
            f"""INSERT INTO {S}.merge_identities (merge_id, identity_id, previous_status)
                SELECT $1, id, status FROM {S}.identities WHERE customer_id = $2::uuid""",
            merge_id, loser,
        )
        await self._db.execute(
            f"""UPDATE {S}.identities SET customer_id = $1::uuid, status = 'merged'
                WHERE customer_id = $2::uuid""",
            survivor, loser,
        )
        await self._db.execute(
            f"""UPDATE {S}.customers SET status = 'merged', merged_into = $1::uuid, updated_at = $3
                WHERE id = $2::uuid""",
            survivor, loser, now,
        )
        await self._db.execute(
            f"""UPDATE {S}.customers SET merges_absorbed = merges_absorbed + 1 + $2,
                       updated_at = $3 WHERE id = $1::uuid""",
            survivor, absorbed, now,
        )
        # The merged customer is no candidate for probabilistic matches any more; its
        # attributes stay, to restore its keys on unmerge.
        await self._db.execute(f"DELETE FROM {S}.blocking_keys WHERE customer_id = $1::uuid", loser)
        return merge_id

    async def lock_merge(self, merge_id: str) -> MergeRecord | None:
        row = await self._db.fetchrow(
            f"""SELECT id::text AS id, survivor_id::text AS survivor_id,
                       merged_id::text AS merged_id, reason, matched_on, merged_at, unmerged_at
                FROM {S}.merges WHERE id = $1::uuid FOR UPDATE""",
            merge_id,
        )
        return _merge_record(row) if row else None

    async def customer_statuses(self, customer_ids: Sequence[str]) -> dict[str, str]:
        rows = await self._db.fetch(
            f"""SELECT id::text AS id, status FROM {S}.customers WHERE id = ANY($1::uuid[])
                ORDER BY id FOR UPDATE""",
            sorted(set(customer_ids)),
        )
        return {r["id"]: r["status"] for r in rows}

    async def unmerge(self, merge: MergeRecord, now: datetime) -> None:
        moved = await self._db.fetch(
            f"""UPDATE {S}.identities AS i
                SET customer_id = $2::uuid, status = mi.previous_status
                FROM {S}.merge_identities AS mi
                WHERE mi.merge_id = $1::uuid AND i.id = mi.identity_id
                RETURNING i.id""",
            merge.merge_id, merge.merged_customer_id,
        )
        # Later merges of the survivor recorded these rows as the survivor's; they are the
        # restored customer's again, so undoing those merges must not take them along.
        await self._db.execute(
            f"""DELETE FROM {S}.merge_identities
                WHERE identity_id = ANY($1::bigint[]) AND merge_id <> $2::uuid""",
            [r["id"] for r in moved], merge.merge_id,
        )
        absorbed = await self._db.fetchval(
            f"SELECT merged_absorbed FROM {S}.merges WHERE id = $1::uuid", merge.merge_id
        )
        await self._db.execute(
            f"""UPDATE {S}.customers SET merges_absorbed = greatest(0, merges_absorbed - 1 - $2),
                       updated_at = $3 WHERE id = $1::uuid""",
            merge.survivor_customer_id, absorbed, now,
        )
        await self._db.execute(
            f"""UPDATE {S}.customers SET status = 'active', merged_into = NULL, updated_at = $2
                WHERE id = $1::uuid""",
            merge.merged_customer_id, now,
        )
        await self._db.execute(
            f"UPDATE {S}.merges SET unmerged_at = $2 WHERE id = $1::uuid", merge.merge_id, now
        )

    async def list_merges(self, customer_id: str) -> list[MergeRecord]:
        rows = await self._db.fetch(
            f"""SELECT id::text AS id, survivor_id::text AS survivor_id,
                       merged_id::text AS merged_id, reason, matched_on, merged_at, unmerged_at
                FROM {S}.merges WHERE survivor_id = $1::uuid OR merged_id = $1::uuid
                ORDER BY merged_at DESC, id""",
            customer_id,
        )
        return [_merge_record(r) for r in rows]

    # --- attributes and candidates ------------------------------------------------------

    async def attributes_of(self, customer_ids: Sequence[str]) -> dict[str, PersonAttributes]:
        rows = await self._db.fetch(
            f"""SELECT customer_id::text AS customer_id, given_name, family_name, birth_date,
                       street_address, locality, postcode, region
                FROM {S}.person_attributes WHERE customer_id = ANY($1::uuid[])""",
            list(customer_ids),
        )
        return {r["customer_id"]: _attributes(r) for r in rows}

    async def save_attributes(
        self, customer_id: str, attributes: PersonAttributes, keys: Iterable[str], now: datetime
    ) -> None:
        await self._db.execute(
            f"""INSERT INTO {S}.person_attributes (customer_id, given_name, family_name,
                    birth_date, street_address, locality, postcode, region, updated_at)
                VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (customer_id) DO UPDATE SET
                    given_name = excluded.given_name, family_name = excluded.family_name,
                    birth_date = excluded.birth_date, street_address = excluded.street_address,
                    locality = excluded.locality, postcode = excluded.postcode,
                    region = excluded.region, updated_at = excluded.updated_at""",
            customer_id, attributes.given_name, attributes.family_name, attributes.birth_date,
            attributes.street_address, attributes.locality, attributes.postcode,
            attributes.region, now,
        )
        await self.replace_blocking_keys(customer_id, keys)

    async def replace_blocking_keys(self, customer_id: str, keys: Iterable[str]) -> None:
        await self._db.execute(
            f"DELETE FROM {S}.blocking_keys WHERE customer_id = $1::uuid", customer_id
        )
        await self._db.execute(
            f"""INSERT INTO {S}.blocking_keys (key, customer_id)
                SELECT key, $2::uuid FROM unnest($1::text[]) AS key ON CONFLICT DO NOTHING""",
            sorted(set(keys)), customer_id,
        )

    async def candidates(
        self, keys: Iterable[str], limit: int
    ) -> dict[str, PersonAttributes]:
        """Active customers filed under any of `keys`, most shared keys first."""
        rows = await self._db.fetch(
            f"""SELECT a.customer_id::text AS customer_id, a.given_name, a.family_name,
                       a.birth_date, a.street_address, a.locality, a.postcode, a.region
                FROM (SELECT customer_id, count(*) AS shared FROM {S}.blocking_keys
                      WHERE key = ANY($1::text[]) GROUP BY customer_id
                      ORDER BY shared DESC LIMIT $2) AS c
                JOIN {S}.person_attributes AS a ON a.customer_id = c.customer_id
                JOIN {S}.customers AS cu ON cu.id = c.customer_id AND cu.status = 'active'""",
            sorted(set(keys)), limit,
        )
        return {r["customer_id"]: _attributes(r) for r in rows}

    # --- forget ---------------------------------------------------------------------------

    async def merged_tree(self, customer_id: str) -> list[str]:
        """The customer and every customer merged into it, directly or not."""
        rows = await self._db.fetch(
            f"""WITH RECURSIVE tree(id) AS (
                    SELECT $1::uuid
                    UNION SELECT c.id FROM {S}.customers c JOIN tree t ON c.merged_into = t.id)
                SELECT id::text AS id FROM tree""",
            customer_id,
        )
        return [r["id"] for r in rows]

    async def identities_of(self, customer_ids: Sequence[str]) -> list[IdentityKey]:
        rows = await self._db.fetch(
            f"""SELECT kind, platform, value FROM {S}.identities
                WHERE customer_id = ANY($1::uuid[])""",
            list(customer_ids),
        )
        return [to_key(r["kind"], r["platform"], r["value"]) for r in rows]

    async def forget(
        self, customer_ids: Sequence[str], digests: Sequence[tuple[str, str]], now: datetime
    ) -> int:
        """Deletes everything identifying these customers, keeping suppression digests."""
        ids = list(customer_ids)
        deleted = await self._db.fetchval(
            f"""WITH gone AS (DELETE FROM {S}.identities WHERE customer_id = ANY($1::uuid[])
                              RETURNING 1) SELECT count(*) FROM gone""",
            ids,
        )
        await self._db.execute(
            f"DELETE FROM {S}.blocking_keys WHERE customer_id = ANY($1::uuid[])", ids
        )
        await self._db.execute(
            f"DELETE FROM {S}.person_attributes WHERE customer_id = ANY($1::uuid[])", ids
        )
        await self._db.execute(
            f"""UPDATE {S}.customers SET status = 'forgotten', updated_at = $2
                WHERE id = ANY($1::uuid[])""",
            ids, now,
        )
        if digests:
            await self._db.execute(
                f"""INSERT INTO {S}.suppressions (digest, kind, created_at)
                    SELECT d, k, $3 FROM unnest($1::text[], $2::text[]) AS s(d, k)
                    ON CONFLICT (digest) DO NOTHING""",
                [d for d, _ in digests], [k for _, k in digests], now,
            )
        return int(deleted or 0)

    async def suppressed(self, digests: Sequence[str]) -> set[str]:
        if not digests:
            return set()
        rows = await self._db.fetch(
            f"SELECT digest FROM {S}.suppressions WHERE digest = ANY($1::text[])", list(digests)
        )
        return {r["digest"] for r in rows}

    # --- reading -------------------------------------------------------------------------

    async def active_root(self, customer_id: str) -> tuple[str, str] | None:
        """(id, status) of the customer `customer_id` resolves to now: itself, or the
        customer it was merged into (following merges of merges)."""
        row = await self._db.fetchrow(
            f"""WITH RECURSIVE chain(id, status, merged_into, depth) AS (
                    SELECT id, status, merged_into, 0 FROM {S}.customers WHERE id = $1::uuid
                    UNION ALL
                    SELECT c.id, c.status, c.merged_into, chain.depth + 1
                    FROM {S}.customers c JOIN chain ON c.id = chain.merged_into
                    WHERE chain.depth < 1000)
                SELECT id::text AS id, status FROM chain ORDER BY depth DESC LIMIT 1""",
            customer_id,
        )
        return (row["id"], row["status"]) if row else None

    async def identity_map(self, customer_id: str) -> IdentityMap | None:
        customer = await self._db.fetchrow(
            f"SELECT created_at, updated_at FROM {S}.customers WHERE id = $1::uuid", customer_id
        )
        if customer is None:
            return None
        rows = await self._db.fetch(
            f"""SELECT kind, platform, value, customer_id::text AS customer_id, status,
                       confidence, source_platform, first_seen_at, last_verified_at
                FROM {S}.identities WHERE customer_id = $1::uuid ORDER BY id""",
            customer_id,
        )
        merged = [cid for cid in await self.merged_tree(customer_id) if cid != customer_id]
        return IdentityMap(
            customer_id=customer_id,
            identities=tuple(
                StoredIdentity(
                    key=to_key(r["kind"], r["platform"], r["value"]),
                    customer_id=r["customer_id"],
                    status=IdentityStatus(r["status"]),
                    confidence=r["confidence"],
                    source_platform=r["source_platform"],
                    first_seen_at=r["first_seen_at"],
                    last_verified_at=r["last_verified_at"],
                )
                for r in rows
            ),
            created_at=customer["created_at"],
            updated_at=customer["updated_at"],
            merged_customer_ids=tuple(sorted(merged)),
        )


def _attributes(row: Any) -> PersonAttributes:
    return PersonAttributes(
        given_name=row["given_name"], family_name=row["family_name"],
        birth_date=row["birth_date"], street_address=row["street_address"],
        locality=row["locality"], postcode=row["postcode"], region=row["region"],
    )


def _merge_record(row: Any) -> MergeRecord:
    return MergeRecord(
        merge_id=row["id"],
        survivor_customer_id=row["survivor_id"],
        merged_customer_id=row["merged_id"],
        reason=row["reason"],
        matched_on=tuple(row["matched_on"]),
        merged_at=row["merged_at"],
        unmerged_at=row["unmerged_at"],
    )
