"""The field catalog: declared fields as typed, indexed columns of the read model.

The attribute schema file is configuration; at start the service makes the database match
it (`apply_declared_fields`), under an advisory lock so that replicas starting together do it
once: a new field gets a column `f<id>` (and an index), a field whose type changed gets a new
column, a field no longer declared loses its column. New columns are then filled from the
stored documents, in batches, before the service consumes or serves. Every change bumps the
catalog version, so running replicas reload the catalog at their next transaction.

Criteria stored with segments never depend on a column existing: a condition whose field is
no longer declared (or declared with another type) reads the document instead.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdp_db import TracedConnection
from cdp_segmentation.adapters.sql_compiler import COLUMN_NAME, SCHEMA, DeclaredColumn
from cdp_segmentation.domain.model import FieldSpec, FieldType
from cdp_segmentation.domain.values import coerce

logger = logging.getLogger(__name__)

CATALOG_LOCK = zlib.crc32(b"cdp-segmentation:catalog") & 0x7FFFFFFF
BACKFILL_BATCH = 5000

SQL_TYPES = {
    FieldType.NUMBER: "double precision",
    FieldType.STRING: "text",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATETIME: "timestamptz",
    FieldType.LIST: "text[]",
}


@dataclass(frozen=True)
class FieldCatalog:
    """The declared fields as the database has them, and the catalog version they are at."""

    specs: Mapping[str, FieldSpec]
    columns: Mapping[str, DeclaredColumn]
    version: int

    @property
    def types(self) -> dict[str, FieldType]:
        return {path: spec.type for path, spec in self.specs.items()}


async def load_catalog(connection: TracedConnection) -> FieldCatalog:
    rows = await connection.fetch(
        f"SELECT path, type, sources, description, indexed, column_name FROM {SCHEMA}.fields "
        "ORDER BY id"
    )
    version = await connection.fetchval(
        f"SELECT version FROM {SCHEMA}.catalog_versions WHERE name = 'fields'"
    )
    specs: dict[str, FieldSpec] = {}
    columns: dict[str, DeclaredColumn] = {}
    for row in rows:
        kind = FieldType(row["type"])
        specs[row["path"]] = FieldSpec(
            path=row["path"],
            type=kind,
            sources=tuple(row["sources"]),
            declared=True,
            description=row["description"],
            indexed=row["indexed"],
        )
        columns[row["path"]] = DeclaredColumn(row["path"], kind, row["column_name"])
    return FieldCatalog(specs, columns, int(version))


def _quoted(column: str) -> str:
    """A catalog column name as an SQL identifier; only `f<digits>` names exist."""
    if not COLUMN_NAME.match(column):
        raise ValueError(f"column name {column!r} is not of the form f<id>")
    return f'"{column}"'


async def _create_index(connection: TracedConnection, column: str, kind: FieldType) -> None:
    method = "gin" if kind is FieldType.LIST else "btree"
    await connection.execute(
        f'CREATE INDEX IF NOT EXISTS "profiles_{column}_idx" ON {SCHEMA}.profiles '
        f"USING {method} ({_quoted(column)})"
    )


async def apply_declared_fields(
    connection: TracedConnection, declared: Mapping[str, FieldSpec]
) -> list[str]:
    """Makes the catalog and the read model's columns match `declared`; fills new columns.

    Returns what changed, in words, for the start-up log. `connection` must not be inside a
    transaction (DDL and each backfill batch commit on their own).
    """
    await connection.execute("SELECT pg_advisory_lock($1, 0)", CATALOG_LOCK)
    try:
        changes = await _apply(connection, declared)
        await _fill_columns(connection)
        return changes
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1, 0)", CATALOG_LOCK)


async def _apply(connection: TracedConnection, declared: Mapping[str, FieldSpec]) -> list[str]:
    changes: list[str] = []
    raw = connection.raw
    async with raw.transaction():
        rows = {
            row["path"]: row
            for row in await connection.fetch(
                f"SELECT id, path, type, indexed, column_name, sources, description "
                f"FROM {SCHEMA}.fields"
            )
        }
        for path, row in rows.items():
            spec = declared.get(path)
            if spec is None or spec.type.value != row["type"]:
                await connection.execute(
                    f"ALTER TABLE {SCHEMA}.profiles DROP COLUMN IF EXISTS "
                    f"{_quoted(row['column_name'])}"
                )
                await connection.execute(f"DELETE FROM {SCHEMA}.fields WHERE id = $1", row["id"])
                changes.append(
                    f"{path}: no longer declared"
                    if spec is None
                    else f"{path}: type {row['type']} -> {spec.type.value} (new column)"
                )
        for path, spec in declared.items():
            row = rows.get(path)
            if row is not None and spec.type.value == row["type"]:
                if (
                    list(row["sources"]) != list(spec.sources)
                    or row["description"] != spec.description
                ):
                    await connection.execute(
                        f"UPDATE {SCHEMA}.fields SET sources = $2, description = $3 "
                        "WHERE id = $1",
                        row["id"],
                        list(spec.sources),
                        spec.description,
                    )
                    changes.append(f"{path}: sources or description updated")
                if row["indexed"] != spec.indexed:
                    await _set_index(connection, row["column_name"], spec)
                    await connection.execute(
                        f"UPDATE {SCHEMA}.fields SET indexed = $2 WHERE id = $1",
                        row["id"],
                        spec.indexed,
                    )
                    changes.append(f"{path}: index {'added' if spec.indexed else 'dropped'}")
                continue
            field_id = await connection.fetchval(
                f"INSERT INTO {SCHEMA}.fields (path, type, sources, description, indexed, "
                "column_name) VALUES ($1, $2, $3, $4, $5, 'f0') RETURNING id",
                path,
                spec.type.value,
                list(spec.sources),
                spec.description,
                spec.indexed,
            )
            column = f"f{int(field_id)}"
            await connection.execute(
                f"UPDATE {SCHEMA}.fields SET column_name = $2 WHERE id = $1", field_id, column
            )
            await connection.execute(
                f"ALTER TABLE {SCHEMA}.profiles ADD COLUMN {_quoted(column)} "
                f"{SQL_TYPES[spec.type]}"
            )
            if spec.indexed:
                await _create_index(connection, column, spec.type)
            changes.append(f"{path}: declared as {spec.type.value} (column {column})")
        if changes:
            await connection.execute(
                f"UPDATE {SCHEMA}.catalog_versions SET version = version + 1 "
                "WHERE name = 'fields'"
            )
    return changes


async def _set_index(connection: TracedConnection, column: str, spec: FieldSpec) -> None:
    if spec.indexed:
        await _create_index(connection, column, spec.type)
    else:
        await connection.execute(f'DROP INDEX IF EXISTS {SCHEMA}."profiles_{column}_idx"')


def column_value(value: Any, kind: FieldType) -> Any:
    """A typed value as the unnest array parameter carries it (lists as JSON text)."""
    if value is None:
        return None
    if kind is FieldType.LIST:
        return json.dumps(value)
    return value


def _document_value(document: Mapping[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return None if isinstance(node, Mapping) else node


async def _fill_columns(connection: TracedConnection) -> None:
    """Reads every stored document into the columns not filled yet, batch by batch."""
    pending = await connection.fetch(
        f"SELECT id, path, type, column_name FROM {SCHEMA}.fields WHERE NOT filled ORDER BY id"
    )
    if not pending:
        return
    fields = [(row["path"], FieldType(row["type"]), row["column_name"]) for row in pending]
    total = 0
    after = None
    assignments = ", ".join(
        f"{_quoted(column)} = {_array_element(kind, f'v.c{i}')}"
        for i, (_, kind, column) in enumerate(fields)
    )
    unnest_types = ", ".join(
        f"${i + 2}::{'text' if kind is FieldType.LIST else _UNNEST[kind]}[]"
        for i, (_, kind, _) in enumerate(fields)
    )
    names = ", ".join(f"c{i}" for i in range(len(fields)))
    update = (
        f"UPDATE {SCHEMA}.profiles p SET {assignments} "
        f"FROM unnest($1::uuid[], {unnest_types}) AS v(customer_id, {names}) "
        "WHERE p.customer_id = v.customer_id"
    )
    while True:
        async with connection.raw.transaction():
            rows = await connection.fetch(
                f"SELECT d.customer_id, d.attributes FROM {SCHEMA}.profile_documents d "
                f"JOIN {SCHEMA}.profiles p ON p.customer_id = d.customer_id "
                "WHERE ($1::uuid IS NULL OR d.customer_id > $1) "
                "ORDER BY d.customer_id LIMIT $2 FOR UPDATE OF p",
                after,
                BACKFILL_BATCH,
            )
            if not rows:
                break
            documents = [
                json.loads(r["attributes"]) if isinstance(r["attributes"], str) else r["attributes"]
                for r in rows
            ]
            arrays = [
                [column_value(coerce(_document_value(doc, path), kind), kind) for doc in documents]
                for path, kind, _ in fields
            ]
            await connection.execute(update, [row["customer_id"] for row in rows], *arrays)
            after = rows[-1]["customer_id"]
            total += len(rows)
    await connection.execute(
        f"UPDATE {SCHEMA}.fields SET filled = true WHERE id = ANY($1::int[])",
        [row["id"] for row in pending],
    )
    logger.info("filled %d new field column(s) from %d stored profiles", len(fields), total)


_UNNEST = {
    FieldType.NUMBER: "float8",
    FieldType.STRING: "text",
    FieldType.BOOLEAN: "boolean",
    FieldType.DATETIME: "timestamptz",
}


def _array_element(kind: FieldType, expression: str) -> str:
    """SQL turning one unnest element into the column's value (lists arrive as JSON)."""
    if kind is FieldType.LIST:
        return (
            f"CASE WHEN {expression} IS NULL THEN NULL "
            f"ELSE ARRAY(SELECT jsonb_array_elements_text({expression}::jsonb)) END"
        )
    return expression
