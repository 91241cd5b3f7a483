"""The profile repository over PostgreSQL.

Every statement is set-based, so a batch of fragments for many customers costs the same few
round trips as one fragment. On the ingestion path whole sets of rows travel as one JSON
document each way: the rows to write are encoded in one call (orjson) and unpacked by
PostgreSQL (`jsonb_array_elements`), and the rows read are packed by PostgreSQL
(`json_agg`) and decoded in one call, rather than each row and each JSON value crossing the
driver on its own. Times travel as microseconds since the epoch, the domain's own unit.
Field states are read by primary key; nothing on the ingestion path reads the fragment
history.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from cdp_bus.subjects import PROFILE_UPDATED
from cdp_profile.adapters.tables import FRAGMENT_SEQUENCE, SCHEMA
from cdp_profile.domain.model import (
    FieldState,
    ProfileHead,
    StoredFragment,
    from_micros,
    to_micros,
)
from cdp_profile.domain.profile import ProfileWork


# Microseconds since the epoch, exactly (extract gives a numeric, not a float).
def _micros(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def _from_micros(expression: str) -> str:
    return f"(timestamptz 'epoch' + ({expression})::bigint * interval '1 microsecond')"


_LOCK = text(
    f"""
    WITH locked AS (
        INSERT INTO {SCHEMA}.profiles AS p
            (customer_id, version, attributes, created_at, updated_at)
        SELECT t.id, 0, '{{}}'::jsonb, CAST(:now AS timestamptz), CAST(:now AS timestamptz)
        FROM unnest(CAST(:ids AS uuid[])) AS t(id)
        ORDER BY t.id
        ON CONFLICT (customer_id) DO UPDATE SET updated_at = p.updated_at
        RETURNING p.customer_id, p.version, p.attributes, p.merged_into,
                  p.forgotten_at IS NOT NULL AS forgotten, p.created_at, p.updated_at
    )
    SELECT coalesce(json_agg(json_build_array(
        customer_id, version, attributes, merged_into, forgotten,
        {_micros("created_at")}, {_micros("updated_at")})), '[]')::text AS heads
    FROM locked
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

# Sequence numbers (ingestion order) and ids for `n` new fragments.
_NEW_FRAGMENTS = text(
    f"""
    SELECT array_agg(nextval('{FRAGMENT_SEQUENCE}')) AS seqs,
           array_agg(gen_random_uuid()::text) AS ids
    FROM generate_series(1, :n)
    """
)

_STATE_JSON = f"""json_build_array(
        f.path, f.strategy, f.value, f.source, {_micros("f.observed_at")}, f.seq,
        f.contributing_sources, f.reason, f.memory)"""

# Exactly the (customer, path) pairs asked for, by primary key; the keys come as one JSON
# object of paths by customer id.
_LOAD_FIELDS = text(
    f"""
    SELECT coalesce(json_agg(json_build_array(f.customer_id, {_STATE_JSON})), '[]')::text
           AS states
    FROM jsonb_each(CAST(:keys AS jsonb)) AS k(customer_id, paths)
    CROSS JOIN jsonb_array_elements_text(k.paths) AS p(path)
    JOIN {SCHEMA}.field_states AS f ON f.customer_id = k.customer_id::uuid AND f.path = p.path
    """
)

_ALL_FIELDS = text(
    f"""
    SELECT coalesce(json_agg({_STATE_JSON}), '[]')::text AS states
    FROM {SCHEMA}.field_states AS f WHERE f.customer_id = CAST(:customer AS uuid)
    """
)

# Rows: [id, seq, customer id, ingested for, source, observed at (µs), received at (µs),
# attributes].
_ADD_FRAGMENTS = text(
    f"""
    INSERT INTO {SCHEMA}.fragments
        (id, seq, customer_id, ingested_for, source, observed_at, received_at, attributes)
    SELECT (r->>0)::uuid, (r->>1)::bigint, (r->>2)::uuid, (r->>3)::uuid, r->>4,
           {_from_micros("r->>5")}, {_from_micros("r->>6")}, r->7
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    """
)

_DELETE_FIELDS = text(
    f"DELETE FROM {SCHEMA}.field_states WHERE customer_id = ANY(CAST(:customers AS uuid[]))"
)

# Rows: [customer id, path, strategy, value, source, observed at (µs), seq,
# contributing sources, reason, memory].
_UPSERT_FIELDS = text(
    f"""
    INSERT INTO {SCHEMA}.field_states
        (customer_id, path, strategy, value, source, observed_at, seq, contributing_sources,
         reason, memory, updated_at)
    SELECT (r->>0)::uuid, r->>1, r->>2, r->3, r->>4, {_from_micros("r->>5")}, (r->>6)::bigint,
           ARRAY(SELECT jsonb_array_elements_text(r->7)), r->>8, r->9, :now
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    ON CONFLICT (customer_id, path) DO UPDATE SET
        strategy = EXCLUDED.strategy, value = EXCLUDED.value, source = EXCLUDED.source,
        observed_at = EXCLUDED.observed_at, seq = EXCLUDED.seq,
        contributing_sources = EXCLUDED.contributing_sources, reason = EXCLUDED.reason,
        memory = EXCLUDED.memory, updated_at = EXCLUDED.updated_at
    """
)

# Rows: [customer id, version, attributes, merged into].
_UPDATE_HEADS = text(
    f"""
    UPDATE {SCHEMA}.profiles AS p
    SET version = (r->>1)::bigint, attributes = r->2, merged_into = (r->>3)::uuid,
        updated_at = :now
    FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS r
    WHERE p.customer_id = (r->>0)::uuid
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
    # orjson encodes the nested states and documents several times faster than json.
    return orjson.dumps(value).decode()


def _head(row: Any) -> ProfileHead:
    return ProfileHead(
        customer_id=row.customer_id,
        version=row.version,
        attributes=orjson.loads(row.attributes),
        created_at=row.created_at,
        updated_at=row.updated_at,
        merged_into=row.merged_into,
        forgotten=row.forgotten,
    )


def _state(item: list[Any]) -> FieldState:
    """A state as `_STATE_JSON` lists it."""
    path, strategy, value, source, at, seq, contributing, reason, memory = item
    return FieldState(path, strategy, value, source, at, seq, tuple(contributing), reason, memory)


class SqlProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _json(self, statement: Any, parameters: dict[str, Any]) -> Any:
        """The one JSON value that `statement` selects, decoded."""
        return orjson.loads((await self._session.execute(statement, parameters)).scalar_one())

    async def lock_profiles(
        self, customer_ids: Collection[str], now: datetime
    ) -> dict[str, ProfileHead]:
        if not customer_ids:
            return {}
        heads = await self._json(_LOCK, {"ids": sorted(customer_ids), "now": now})
        return {
            customer: ProfileHead(
                customer_id=customer,
                version=version,
                attributes=attributes,
                created_at=from_micros(created),
                updated_at=from_micros(updated),
                merged_into=merged_into,
                forgotten=forgotten,
            )
            for customer, version, attributes, merged_into, forgotten, created, updated in heads
        }

    async def survivors(self, customer_ids: Collection[str]) -> dict[str, str]:
        if not customer_ids:
            return {}
        rows = await self._session.execute(_SURVIVORS, {"ids": list(customer_ids)})
        return {row.start_id: row.current_id for row in rows}

    async def allocate_fragments(self, count: int) -> list[tuple[int, str]]:
        if count <= 0:
            return []
        row = (await self._session.execute(_NEW_FRAGMENTS, {"n": count})).one()
        return list(zip(sorted(row.seqs), row.ids, strict=True))

    async def load_fields(
        self, paths_by_customer: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, FieldState]]:
        states: dict[str, dict[str, FieldState]] = {c: {} for c in paths_by_customer}
        if not paths_by_customer:
            return states
        keys = {customer: list(paths) for customer, paths in paths_by_customer.items() if paths}
        for customer, state in await self._json(_LOAD_FIELDS, {"keys": _dumps(keys)}):
            states[customer][state[0]] = _state(state)
        return states

    async def add_fragments(self, fragments: Sequence[StoredFragment]) -> None:
        if not fragments:
            return
        # Fragments stored together were received together: one conversion per distinct time.
        received = {f.received_at: 0 for f in fragments}
        for moment in received:
            received[moment] = to_micros(moment)
        rows = [
            [
                f.id,
                f.seq,
                f.customer_id,
                f.ingested_for,
                f.source,
                to_micros(f.observed_at),
                received[f.received_at],
                f.attributes,
            ]
            for f in fragments
        ]
        await self._session.execute(_ADD_FRAGMENTS, {"rows": _dumps(rows)})

    async def save(self, works: Sequence[ProfileWork], now: datetime) -> None:
        replaced = [work.customer_id for work in works if work.replaced]
        if replaced:
            await self._session.execute(_DELETE_FIELDS, {"customers": replaced})
        rows = [
            [
                work.customer_id,
                s.path,
                s.strategy,
                s.value,
                s.source,
                s.at,
                s.seq,
                s.contributing_sources,
                s.reason,
                s.memory,
            ]
            for work in works
            for s in (work.fields if work.replaced else work.dirty).values()
        ]
        if rows:
            await self._session.execute(_UPSERT_FIELDS, {"rows": _dumps(rows), "now": now})
        changed = [
            [work.customer_id, work.version, work.document, work.head.merged_into]
            for work in works
            if work.changed
        ]
        if changed:
            await self._session.execute(_UPDATE_HEADS, {"rows": _dumps(changed), "now": now})

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
                attributes=orjson.loads(row.attributes),
            )
            for row in rows
        ]

    async def profile(self, customer_id: str) -> tuple[ProfileHead, list[FieldState]] | None:
        head = (await self._session.execute(_HEAD, {"customer": customer_id})).first()
        if head is None:
            return None
        states = await self._json(_ALL_FIELDS, {"customer": customer_id})
        return _head(head), [_state(item) for item in states]

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
