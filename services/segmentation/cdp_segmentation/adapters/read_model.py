"""Segmentation's own copy of profile attributes, fed by `cdp.profile.updated`.

One narrow row per customer (version, status, email, a typed column per declared field)
and the normalised document beside it. Writes are set-based: a batch of profile events is
one upsert, whatever its size. A stale version (lower than the one held) changes nothing;
an erased customer never comes back; a customer merged into another comes back only with a
change that happened after the merge (an unmerge).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdp_db import TracedConnection
from cdp_segmentation.adapters.catalog import column_value
from cdp_segmentation.adapters.sql_compiler import SCHEMA, DeclaredColumn
from cdp_segmentation.domain.model import FieldType, LearnedField

ACTIVE, MERGED, FORGOTTEN = 0, 1, 2

_ARRAY_TYPES = {
    FieldType.NUMBER: "float8",
    FieldType.STRING: "text",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATETIME: "timestamptz",
    # Lists travel as JSON text: unnest would flatten an array of arrays.
    FieldType.LIST: "text",
}


@dataclass(frozen=True)
class ProfileRow:
    customer_id: str
    version: int
    occurred_at: datetime
    email: str | None
    document: Mapping[str, Any]
    # Declared path -> typed value (None when absent).
    typed: Mapping[str, Any]


@dataclass(frozen=True)
class Deletion:
    customer_id: str
    occurred_at: datetime
    # Erased (never comes back) rather than merged into another customer.
    forgotten: bool


def _column_expression(column: DeclaredColumn, source: str) -> str:
    if column.type is FieldType.LIST:
        return (
            f"CASE WHEN {source} IS NULL THEN NULL "
            f"ELSE ARRAY(SELECT jsonb_array_elements_text({source}::jsonb)) END"
        )
    return source


class ReadModel:
    def __init__(self, connection: TracedConnection) -> None:
        self._c = connection

    async def upsert(
        self, rows: Sequence[ProfileRow], columns: Sequence[DeclaredColumn]
    ) -> dict[str, bool]:
        """Applies the newer of `rows` (one per customer); customer id -> whether its email
        changed, for the profiles that changed."""
        if not rows:
            return {}
        names = [f'"{c.column}"' for c in columns]
        typed_params = ", ".join(
            f"${i + 6}::{_ARRAY_TYPES[c.type]}[]" for i, c in enumerate(columns)
        )
        aliases = ", ".join(f"v{i}" for i in range(len(columns)))
        select_typed = "".join(
            f", {_column_expression(c, f'i.v{i}')}" for i, c in enumerate(columns)
        )
        assign_typed = "".join(f", {name} = excluded.{name}" for name in names)
        insert_typed = "".join(f", {name}" for name in names)
        sql = f"""
WITH incoming AS (
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::text[], $5::text[]
                       {", " + typed_params if columns else ""})
    AS i(customer_id, version, occurred_at, email, document{", " + aliases if columns else ""})
),
upserted AS (
  INSERT INTO {SCHEMA}.profiles AS p (customer_id, version, status, email, updated_at{insert_typed})
  SELECT i.customer_id, i.version, {ACTIVE}, i.email, i.occurred_at{select_typed} FROM incoming i
  ON CONFLICT (customer_id) DO UPDATE SET
    version = excluded.version, status = {ACTIVE}, email = excluded.email,
    updated_at = excluded.updated_at, deleted_at = NULL{assign_typed}
  WHERE p.version < excluded.version AND p.status <> {FORGOTTEN}
    AND (p.deleted_at IS NULL OR excluded.updated_at > p.deleted_at)
  RETURNING p.customer_id, p.email AS new_email,
    (SELECT o.email FROM {SCHEMA}.profiles o WHERE o.customer_id = p.customer_id) AS old_email
),
documents AS (
  INSERT INTO {SCHEMA}.profile_documents (customer_id, attributes)
  SELECT i.customer_id, i.document::jsonb FROM incoming i JOIN upserted u USING (customer_id)
  ON CONFLICT (customer_id) DO UPDATE SET attributes = excluded.attributes
)
SELECT customer_id, old_email IS DISTINCT FROM new_email AS email_changed FROM upserted
"""
        by_column = {c.path: i for i, c in enumerate(columns)}
        arrays: list[list[Any]] = [[] for _ in columns]
        for row in rows:
            for path, index in by_column.items():
                arrays[index].append(column_value(row.typed.get(path), columns[index].type))
        result = await self._c.fetch(
            sql,
            [r.customer_id for r in rows],
            [r.version for r in rows],
            [r.occurred_at for r in rows],
            [r.email for r in rows],
            [json.dumps(r.document, separators=(",", ":")) for r in rows],
            *arrays,
        )
        return {str(r["customer_id"]): bool(r["email_changed"]) for r in result}

    async def delete(
        self, deletions: Sequence[Deletion], columns: Sequence[DeclaredColumn]
    ) -> list[str]:
        """Marks customers merged or forgotten, clearing what is held on them; returns the
        customers whose state changed."""
        if not deletions:
            return []
        cleared = "".join(f', "{c.column}" = NULL' for c in columns)
        changed = await self._c.fetch(
            f"""
INSERT INTO {SCHEMA}.profiles AS p (customer_id, version, status, deleted_at, updated_at)
SELECT customer_id, 0, CASE WHEN forgotten THEN {FORGOTTEN} ELSE {MERGED} END, at, at
FROM unnest($1::uuid[], $2::timestamptz[], $3::boolean[]) AS d(customer_id, at, forgotten)
ON CONFLICT (customer_id) DO UPDATE SET
  status = excluded.status, deleted_at = excluded.deleted_at, email = NULL{cleared}
WHERE p.status <> {FORGOTTEN}
  AND (excluded.status = {FORGOTTEN} OR p.updated_at <= excluded.deleted_at)
RETURNING p.customer_id
""",
            [d.customer_id for d in deletions],
            [d.occurred_at for d in deletions],
            [d.forgotten for d in deletions],
        )
        ids = [str(r["customer_id"]) for r in changed]
        if ids:
            await self._c.execute(
                f"DELETE FROM {SCHEMA}.profile_documents WHERE customer_id = ANY($1::uuid[])", ids
            )
        return ids

    async def learned_fields(self, paths: Iterable[str] | None = None) -> dict[str, LearnedField]:
        if paths is None:
            rows = await self._c.fetch(f"SELECT path, type, sources FROM {SCHEMA}.learned_fields")
        else:
            rows = await self._c.fetch(
                f"SELECT path, type, sources FROM {SCHEMA}.learned_fields "
                "WHERE path = ANY($1::text[])",
                list(paths),
            )
        found: dict[str, tuple[set[FieldType], set[str]]] = {}
        for row in rows:
            kinds, sources = found.setdefault(row["path"], (set(), set()))
            kinds.add(FieldType(row["type"]))
            sources.update(row["sources"])
        return {
            path: LearnedField(path, frozenset(kinds), frozenset(sources))
            for path, (kinds, sources) in found.items()
        }

    async def learned_count(self) -> int:
        value: int = await self._c.fetchval(
            f"SELECT count(DISTINCT path) FROM {SCHEMA}.learned_fields"
        )
        return value

    async def remember_learned(
        self, observations: Sequence[tuple[str, FieldType, str]], now: datetime
    ) -> None:
        """Records (path, type, source) sightings; a source of "" adds no source.

        One row per (path, type) goes in, its sources gathered: one statement may not touch a
        row twice, and a batch often sees a field from two platforms.
        """
        if not observations:
            return
        await self._c.execute(
            f"""
INSERT INTO {SCHEMA}.learned_fields AS l (path, type, sources, first_seen_at)
SELECT path, type,
       coalesce(array_agg(DISTINCT source ORDER BY source) FILTER (WHERE source <> ''),
                '{{}}'::text[]),
       $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS o(path, type, source)
GROUP BY path, type
ON CONFLICT (path, type) DO UPDATE SET
  sources = ARRAY(SELECT DISTINCT s FROM unnest(l.sources || excluded.sources) AS s ORDER BY s)
WHERE NOT (l.sources @> excluded.sources)
""",
            [o[0] for o in observations],
            [o[1].value for o in observations],
            [o[2] for o in observations],
            now,
        )

    async def claim_messages(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """The ids not applied before by `consumer`, claimed in this transaction."""
        if not message_ids:
            return set()
        rows = await self._c.fetch(
            f"INSERT INTO {SCHEMA}.processed_messages (consumer, message_id) "
            "SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING message_id",
            consumer,
            list(dict.fromkeys(message_ids)),
        )
        return {r["message_id"] for r in rows}

    async def profile_count(self) -> int:
        value: int = await self._c.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.profiles WHERE status = {ACTIVE}"
        )
        return value
