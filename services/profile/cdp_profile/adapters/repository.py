"""The profile repository over PostgreSQL.

Every statement is set-based: keys travel as parallel arrays through `unnest` or `= ANY`,
so a batch of fragments for many customers costs the same few round trips as one fragment.
JSON travels as text and is cast in SQL (`::jsonb`), which keeps the driver's codecs out
of it. Field states are read by primary key; nothing on the ingestion path reads the
fragment history.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cdp_bus.subjects import PROFILE_UPDATED
from cdp_profile.adapters.tables import FRAGMENT_SEQUENCE, SCHEMA
from cdp_profile.domain.model import FieldState, ProfileHead, StoredFragment, to_micros
from cdp_profile.domain.profile import ProfileWork

_LOCK = text(
    f"""
    INSERT INTO {SCHEMA}.profiles AS p (customer_id, version, attributes, created_at, updated_at)
    SELECT t.id, 0, '{{}}'::jsonb, :now, :now
    FROM unnest(CAST(:ids AS uuid[])) AS t(id)
    ORDER BY t.id
    ON CONFLICT (customer_id) DO UPDATE SET updated_at = p.updated_at
    RETURNING p.customer_id::text AS customer_id, p.version, p.attributes::text AS attributes,
              p.merged_into::text AS merged_into, p.forgotten_at IS NOT NULL AS forgotten,
              p.created_at, p.updated_at
    """
)

_SURVIVORS = text(
    f"""
    WITH RECURSIVE chain(start_id, current_id, depth) AS (
        SELECT customer_id, merged_into, 1 FROM {SCHEMA}.profiles
        WHERE customer_id = ANY(CAST(:ids AS uuid[])) AND merged_into IS NOT NULL
      UNION ALL
        SELECT c.start_id, p.merged_into, c.depth + 1
        FROM chain AS c JOIN {SCHEMA}.profiles AS p ON p.customer_id = c.current_id
        WHERE p.merged_into IS NOT NULL AND c.depth < 64
    )
    SELECT DISTINCT ON (start_id) start_id::text AS start_id, current_id::text AS current_id
    FROM chain ORDER BY start_id, depth DESC
    """
)

_SEQUENCE = text(f"SELECT nextval('{FRAGMENT_SEQUENCE}') AS seq FROM generate_series(1, :n)")

_FIELD_COLUMNS = """f.customer_id::text AS customer_id, f.path, f.strategy, f.value::text AS value,
       f.source, f.observed_at, f.seq, f.contributing_sources, f.reason,
       f.memory::text AS memory"""

_LOAD_FIELDS = text(
    f"""
    SELECT {_FIELD_COLUMNS}
    FROM {SCHEMA}.field_states AS f
    WHERE f.customer_id = ANY(CAST(:customers AS uuid[])) AND f.path = ANY(CAST(:paths AS text[]))
    """
)

_ALL_FIELDS = text(
    f"SELECT {_FIELD_COLUMNS} FROM {SCHEMA}.field_states AS f "
    "WHERE f.customer_id = CAST(:customer AS uuid)"
)

_ADD_FRAGMENTS = text(
    f"""
    INSERT INTO {SCHEMA}.fragments
        (id, seq, customer_id, ingested_for, source, observed_at, received_at, attributes)
    SELECT t.id, t.seq, t.customer_id, t.ingested_for, t.source, t.observed_at, t.received_at,
           t.attributes::jsonb
    FROM unnest(CAST(:ids AS uuid[]), CAST(:seqs AS bigint[]), CAST(:customers AS uuid[]),
                CAST(:ingested_for AS uuid[]), CAST(:sources AS text[]),
                CAST(:observed AS timestamptz[]), CAST(:received AS timestamptz[]),
                CAST(:attributes AS text[]))
         AS t(id, seq, customer_id, ingested_for, source, observed_at, received_at, attributes)
    """
)

_DELETE_FIELDS = text(
    f"DELETE FROM {SCHEMA}.field_states WHERE customer_id = ANY(CAST(:customers AS uuid[]))"
)

_UPSERT_FIELDS = text(
    f"""
    INSERT INTO {SCHEMA}.field_states
        (customer_id, path, strategy, value, source, observed_at, seq, contributing_sources,
         reason, memory, updated_at)
    SELECT t.customer_id, t.path, t.strategy, t.value::jsonb, t.source, t.observed_at, t.seq,
           string_to_array(t.contributing, ','), t.reason, t.memory::jsonb, :now
    FROM unnest(CAST(:customers AS uuid[]), CAST(:paths AS text[]), CAST(:strategies AS text[]),
                CAST(:values AS text[]), CAST(:sources AS text[]),
                CAST(:observed AS timestamptz[]), CAST(:seqs AS bigint[]),
                CAST(:contributing AS text[]), CAST(:reasons AS text[]),
                CAST(:memories AS text[]))
         AS t(customer_id, path, strategy, value, source, observed_at, seq, contributing,
              reason, memory)
    ON CONFLICT (customer_id, path) DO UPDATE SET
        strategy = EXCLUDED.strategy, value = EXCLUDED.value, source = EXCLUDED.source,
        observed_at = EXCLUDED.observed_at, seq = EXCLUDED.seq,
        contributing_sources = EXCLUDED.contributing_sources, reason = EXCLUDED.reason,
        memory = EXCLUDED.memory, updated_at = EXCLUDED.updated_at
    """
)

_UPDATE_HEADS = text(
    f"""
    UPDATE {SCHEMA}.profiles AS p
    SET version = t.version, attributes = t.attributes::jsonb, merged_into = t.merged_into,
        updated_at = :now
    FROM unnest(CAST(:ids AS uuid[]), CAST(:versions AS bigint[]), CAST(:attributes AS text[]),
                CAST(:merged_into AS uuid[])) AS t(id, version, attributes, merged_into)
    WHERE p.customer_id = t.id
    """
)

_HISTORY = text(
    f"""
    SELECT id::text AS id, seq, customer_id::text AS customer_id,
           ingested_for::text AS ingested_for, source, observed_at, received_at,
           attributes::text AS attributes
    FROM {SCHEMA}.fragments WHERE customer_id = CAST(:customer AS uuid) ORDER BY seq
    """
)

_HEAD = text(
    f"""
    SELECT customer_id::text AS customer_id, version, attributes::text AS attributes,
           merged_into::text AS merged_into, forgotten_at IS NOT NULL AS forgotten,
           created_at, updated_at
    FROM {SCHEMA}.profiles WHERE customer_id = CAST(:customer AS uuid)
    """
)

_MOVE = text(
    f"UPDATE {SCHEMA}.fragments SET customer_id = CAST(:to_customer AS uuid) "
    "WHERE customer_id = CAST(:from_customer AS uuid)"
)

_FAMILY = text(
    f"""
    WITH RECURSIVE family(id) AS (
        SELECT CAST(:customer AS uuid)
      UNION
        SELECT p.customer_id FROM {SCHEMA}.profiles AS p JOIN family AS f ON p.merged_into = f.id
    )
    SELECT id::text AS id FROM family
    """
)

_OWNERS = text(
    f"SELECT DISTINCT customer_id::text AS customer_id FROM {SCHEMA}.fragments "
    "WHERE ingested_for = ANY(CAST(:ids AS uuid[]))"
)

_RECLAIM = text(
    f"""
    UPDATE {SCHEMA}.fragments SET customer_id = CAST(:customer AS uuid)
    WHERE ingested_for = ANY(CAST(:ids AS uuid[])) AND customer_id <> CAST(:customer AS uuid)
    """
)

_FORGET_FRAGMENTS = text(
    f"""
    DELETE FROM {SCHEMA}.fragments
    WHERE customer_id = ANY(CAST(:ids AS uuid[])) OR ingested_for = ANY(CAST(:ids AS uuid[]))
    """
)

_FORGET_PROFILES = text(
    f"""
    UPDATE {SCHEMA}.profiles
    SET attributes = '{{}}'::jsonb, merged_into = NULL, forgotten_at = :now, updated_at = :now
    WHERE customer_id = ANY(CAST(:ids AS uuid[]))
    """
)

# Announcements about an erased customer that the relay has not sent yet would carry the
# erased attributes to every consumer; they are dropped with the rest.
_FORGET_OUTBOX = text(
    f"""
    DELETE FROM {SCHEMA}.outbox
    WHERE subject = :subject AND headers ->> 'ce-subject' = ANY(CAST(:ids AS text[]))
    """
)


_RECORD_MERGE = text(
    f"""
    INSERT INTO {SCHEMA}.merges AS m (merge_id, survivor_id, merged_id, merged_at)
    VALUES (:merge_id, CAST(:survivor AS uuid), CAST(:merged AS uuid), :now)
    ON CONFLICT (merge_id) DO UPDATE SET merged_at = coalesce(m.merged_at, EXCLUDED.merged_at)
    RETURNING m.unmerged_at IS NULL AS applies
    """
)

_RECORD_UNMERGE = text(
    f"""
    INSERT INTO {SCHEMA}.merges AS m (merge_id, survivor_id, merged_id, unmerged_at)
    VALUES (:merge_id, CAST(:survivor AS uuid), CAST(:restored AS uuid), :now)
    ON CONFLICT (merge_id) DO UPDATE SET unmerged_at = coalesce(m.unmerged_at, EXCLUDED.unmerged_at)
    """
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _head(row: Any) -> ProfileHead:
    return ProfileHead(
        customer_id=row.customer_id,
        version=row.version,
        attributes=json.loads(row.attributes),
        created_at=row.created_at,
        updated_at=row.updated_at,
        merged_into=row.merged_into,
        forgotten=row.forgotten,
    )


def _state(row: Any) -> FieldState:
    return FieldState(
        path=row.path,
        strategy=row.strategy,
        value=json.loads(row.value),
        source=row.source,
        at=to_micros(row.observed_at),
        seq=row.seq,
        contributing_sources=tuple(row.contributing_sources),
        reason=row.reason,
        # Most strategies remember nothing beyond the winner.
        memory={} if row.memory == "{}" else json.loads(row.memory),
    )


class SqlProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def lock_profiles(
        self, customer_ids: Collection[str], now: datetime
    ) -> dict[str, ProfileHead]:
        if not customer_ids:
            return {}
        rows = await self._session.execute(_LOCK, {"ids": sorted(customer_ids), "now": now})
        return {row.customer_id: _head(row) for row in rows}

    async def survivors(self, customer_ids: Collection[str]) -> dict[str, str]:
        if not customer_ids:
            return {}
        rows = await self._session.execute(_SURVIVORS, {"ids": list(customer_ids)})
        return {row.start_id: row.current_id for row in rows}

    async def allocate_sequence(self, count: int) -> list[int]:
        if count <= 0:
            return []
        rows = await self._session.execute(_SEQUENCE, {"n": count})
        return sorted(row.seq for row in rows)

    async def load_fields(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], FieldState]:
        if not keys:
            return {}
        wanted = set(keys)
        rows = await self._session.execute(
            _LOAD_FIELDS,
            {
                "customers": sorted({customer for customer, _ in wanted}),
                "paths": sorted({path for _, path in wanted}),
            },
        )
        # `= ANY` on both columns of the primary key may also return (customer, path) pairs
        # nobody asked for (another fragment's path); they are simply not used.
        states = {}
        for row in rows:
            key = (row.customer_id, row.path)
            if key in wanted:
                states[key] = _state(row)
        return states

    async def add_fragments(self, fragments: Sequence[StoredFragment]) -> None:
        if not fragments:
            return
        await self._session.execute(
            _ADD_FRAGMENTS,
            {
                "ids": [f.id for f in fragments],
                "seqs": [f.seq for f in fragments],
                "customers": [f.customer_id for f in fragments],
                "ingested_for": [f.ingested_for for f in fragments],
                "sources": [f.source for f in fragments],
                "observed": [f.observed_at for f in fragments],
                "received": [f.received_at for f in fragments],
                "attributes": [_dumps(f.attributes) for f in fragments],
            },
        )

    async def save(self, works: Sequence[ProfileWork], now: datetime) -> None:
        replaced = [work.customer_id for work in works if work.replaced]
        if replaced:
            await self._session.execute(_DELETE_FIELDS, {"customers": replaced})
        rows: list[tuple[str, FieldState]] = []
        for work in works:
            states = work.fields if work.replaced else work.dirty
            rows.extend((work.customer_id, state) for state in states.values())
        if rows:
            await self._session.execute(
                _UPSERT_FIELDS,
                {
                    "customers": [customer for customer, _ in rows],
                    "paths": [s.path for _, s in rows],
                    "strategies": [s.strategy for _, s in rows],
                    "values": [_dumps(s.value) for _, s in rows],
                    "sources": [s.source for _, s in rows],
                    "observed": [s.observed_at for _, s in rows],
                    "seqs": [s.seq for _, s in rows],
                    "contributing": [",".join(s.contributing_sources) for _, s in rows],
                    "reasons": [s.reason for _, s in rows],
                    "memories": [_dumps(s.memory) for _, s in rows],
                    "now": now,
                },
            )
        changed = [work for work in works if work.changed]
        if changed:
            await self._session.execute(
                _UPDATE_HEADS,
                {
                    "ids": [w.customer_id for w in changed],
                    "versions": [w.version for w in changed],
                    "attributes": [_dumps(w.document) for w in changed],
                    "merged_into": [w.head.merged_into for w in changed],
                    "now": now,
                },
            )

    async def history(self, customer_id: str) -> list[StoredFragment]:
        rows = await self._session.execute(_HISTORY, {"customer": customer_id})
        return [
            StoredFragment(
                id=row.id,
                seq=row.seq,
                customer_id=row.customer_id,
                ingested_for=row.ingested_for,
                source=row.source,
                observed_at=row.observed_at,
                received_at=row.received_at,
                attributes=json.loads(row.attributes),
            )
            for row in rows
        ]

    async def profile(self, customer_id: str) -> tuple[ProfileHead, list[FieldState]] | None:
        head = (await self._session.execute(_HEAD, {"customer": customer_id})).first()
        if head is None:
            return None
        rows = await self._session.execute(_ALL_FIELDS, {"customer": customer_id})
        return _head(head), [_state(row) for row in rows]

    async def move_fragments(self, from_customer: str, to_customer: str) -> int:
        result = await self._session.execute(
            _MOVE, {"from_customer": from_customer, "to_customer": to_customer}
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def family(self, customer_id: str) -> set[str]:
        rows = await self._session.execute(_FAMILY, {"customer": customer_id})
        return {row.id for row in rows}

    async def owners_of_fragments_for(self, customer_ids: Collection[str]) -> set[str]:
        if not customer_ids:
            return set()
        rows = await self._session.execute(_OWNERS, {"ids": list(customer_ids)})
        return {row.customer_id for row in rows}

    async def reclaim_fragments(self, customer_id: str, ingested_for: Collection[str]) -> int:
        result = await self._session.execute(
            _RECLAIM, {"customer": customer_id, "ids": list(ingested_for)}
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def record_merge(self, merge_id: str, survivor: str, merged: str, now: datetime) -> bool:
        row = (
            await self._session.execute(
                _RECORD_MERGE,
                {"merge_id": merge_id, "survivor": survivor, "merged": merged, "now": now},
            )
        ).first()
        return bool(row is not None and row.applies)

    async def record_unmerge(
        self, merge_id: str, survivor: str, restored: str, now: datetime
    ) -> None:
        await self._session.execute(
            _RECORD_UNMERGE,
            {"merge_id": merge_id, "survivor": survivor, "restored": restored, "now": now},
        )

    async def forget(self, customer_ids: Collection[str], now: datetime) -> int:
        ids = list(customer_ids)
        if not ids:
            return 0
        deleted = await self._session.execute(_FORGET_FRAGMENTS, {"ids": ids})
        await self._session.execute(_DELETE_FIELDS, {"customers": ids})
        await self._session.execute(_FORGET_PROFILES, {"ids": ids, "now": now})
        await self._session.execute(_FORGET_OUTBOX, {"ids": ids, "subject": PROFILE_UPDATED})
        return int(getattr(deleted, "rowcount", 0) or 0)
