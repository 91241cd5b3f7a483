"""The event store over PostgreSQL, in asyncpg directly (the router's hot path).

Each accepted event is one row, written once (idempotent by event id: a retried publish
finds its id taken and is reported a duplicate). The same row is the outbox: the relay
publishes rows whose `published_at` is still empty, in acceptance order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from cdp_db import TracedConnection
from cdp_errors import FieldViolation
from cdp_event_router.domain.model import EventFilter, FailedEvent, Lane, StoredEvent
from cdp_event_router.domain.triggers import Projection

S = "event_router"


@dataclass(slots=True)
class EventRow:
    id: str
    type: str
    source: str
    customer_id: str | None
    occurred_at: datetime
    received_at: datetime
    properties_json: str
    targets: tuple[str, ...]
    lane: Lane
    payload: bytes
    trace_json: str


_INSERT = f"""
    INSERT INTO {S}.events (id, type, source, customer_id, resolved_customer_id, occurred_at,
                            received_at, properties, targets, lane, payload, trace_headers)
    SELECT e.id, e.type, e.source, e.customer_id, e.customer_id, e.occurred_at, e.received_at,
           e.properties::jsonb, string_to_array(e.targets, ','), e.lane, e.payload,
           e.trace::jsonb
    FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[],
                $6::timestamptz[], $7::text[], $8::text[], $9::smallint[], $10::bytea[],
                $11::text[])
         AS e(id, type, source, customer_id, occurred_at, received_at, properties, targets,
              lane, payload, trace)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
"""


async def insert_events(connection: TracedConnection, rows: Sequence[EventRow]) -> set[str]:
    """Stores the rows not stored yet; returns the ids stored by this call."""
    if not rows:
        return set()
    stored = await connection.fetch(
        _INSERT,
        [r.id for r in rows], [r.type for r in rows], [r.source for r in rows],
        [r.customer_id for r in rows], [r.occurred_at for r in rows],
        [r.received_at for r in rows], [r.properties_json for r in rows],
        [",".join(r.targets) for r in rows], [int(r.lane) for r in rows],
        [r.payload for r in rows], [r.trace_json for r in rows],
    )
    return {record[0] for record in stored}


async def customers_of(connection: TracedConnection, ids: Sequence[str]) -> dict[str, tuple[str,
                                                                                          list[str]]]:
    """Customer and targets of already-stored events (to answer duplicates)."""
    rows = await connection.fetch(
        f"SELECT id, customer_id::text, targets FROM {S}.events WHERE id = ANY($1::text[])",
        list(ids),
    )
    return {r[0]: (r[1] or "", list(r[2])) for r in rows}


async def insert_failed(connection: TracedConnection, failed: Sequence[FailedEvent]) -> None:
    if not failed:
        return
    await connection.execute(
        f"""INSERT INTO {S}.failed_events (event_id, type, source, raw_json, violations,
                                            received_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[],
                                 $6::timestamptz[])""",
        [f.event_id for f in failed], [f.type for f in failed], [f.source for f in failed],
        [f.raw_json for f in failed],
        [json.dumps([{"field": v.field, "description": v.description} for v in f.violations])
         for f in failed],
        [f.received_at for f in failed],
    )


async def list_failed(connection: TracedConnection, limit: int) -> list[FailedEvent]:
    rows = await connection.fetch(
        f"""SELECT event_id, type, source, raw_json, violations, received_at
            FROM {S}.failed_events ORDER BY seq DESC LIMIT $1""",
        limit,
    )
    return [
        FailedEvent(
            r[0], r[1], r[2], r[3],
            tuple(FieldViolation(v["field"], v["description"]) for v in json.loads(r[4])),
            r[5],
        )
        for r in rows
    ]


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row["id"], type=row["type"], source=row["source"],
        customer_id=row["customer_id"] or "", occurred_at=row["occurred_at"],
        received_at=row["received_at"], targets=tuple(row["targets"]),
        payload=bytes(row["payload"]),
    )


_COLUMNS = ("seq, id, type, source, customer_id::text AS customer_id, occurred_at, received_at, "
            "targets, payload")


async def get_event(connection: TracedConnection, event_id: str) -> StoredEvent | None:
    row = await connection.fetchrow(
        f"SELECT {_COLUMNS} FROM {S}.events WHERE id = $1", event_id
    )
    return _stored(row) if row else None


def _filter_sql(event_filter: EventFilter, first: int) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    values: list[Any] = []

    def add(sql: str, value: Any) -> None:
        values.append(value)
        clauses.append(sql.format(f"${first + len(values) - 1}"))

    if event_filter.customer_id:
        add("customer_id = {}::uuid", event_filter.customer_id)
    if event_filter.types:
        add("type = ANY({}::text[])", list(event_filter.types))
    if event_filter.source:
        add("source = {}", event_filter.source)
    if event_filter.since is not None:
        add("occurred_at >= {}", event_filter.since)
    if event_filter.until is not None:
        add("occurred_at < {}", event_filter.until)
    return (" AND ".join(clauses) or "TRUE"), values


async def stream_events(
    connection: TracedConnection, event_filter: EventFilter, *, limit: int = 0,
    chunk: int = 500,
) -> AsyncIterator[tuple[int, StoredEvent]]:
    """Matching events in acceptance order, fetched `chunk` rows at a time (keyset paging,
    so memory stays flat however many match)."""
    where, values = _filter_sql(event_filter, 3)
    after, sent = 0, 0
    while True:
        size = chunk if not limit else min(chunk, limit - sent)
        if size <= 0:
            return
        rows = await connection.fetch(
            f"SELECT {_COLUMNS} FROM {S}.events WHERE seq > $1 AND {where} "
            f"ORDER BY seq LIMIT $2",
            after, size, *values,
        )
        for row in rows:
            yield row["seq"], _stored(row)
        sent += len(rows)
        if len(rows) < size:
            return
        after = rows[-1]["seq"]


# --- relay ----------------------------------------------------------------------------------

async def claim_unpublished(
    connection: TracedConnection, lanes: Sequence[Lane], limit: int
) -> list[Any]:
    return await connection.fetch(
        f"""SELECT seq, id, type, source, customer_id::text AS customer_id, targets, payload,
                   trace_headers, occurred_at
            FROM {S}.events WHERE published_at IS NULL AND lane = ANY($1::smallint[])
            ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED""",
        [int(lane) for lane in lanes], limit,
    )


async def mark_published(connection: TracedConnection, seqs: Sequence[int],
                         now: datetime) -> None:
    await connection.execute(
        f"UPDATE {S}.events SET published_at = $2 WHERE seq = ANY($1::bigint[])", list(seqs), now
    )


async def pending_count(connection: TracedConnection) -> int:
    count: int = await connection.fetchval(
        f"SELECT count(*) FROM {S}.events WHERE published_at IS NULL"
    )
    return count


# --- triggers ---------------------------------------------------------------------------------

async def aggregate(
    connection: TracedConnection,
    customer_ids: Sequence[str],
    event_types: Sequence[str],
    projections: Sequence[Projection],
) -> dict[str, tuple[dict[str, Any], datetime, str]]:
    """For each customer: the projections' values over its events of `event_types`, the
    newest event time and that event's source. One query for all customers."""
    selects: list[str] = []
    values: list[Any] = [list(customer_ids), list(event_types)]
    for projection in projections:
        if projection.aggregate == "count":
            selects.append("count(*)")
            continue
        if projection.from_timestamp:
            expression = "occurred_at"
        else:
            values.append(list(projection.field))
            path = f"${len(values)}::text[]"
            if projection.aggregate == "latest":
                expression = f"properties #> {path}"
            else:
                # Only numbers take part in sum/max/min; anything else counts as missing.
                expression = (f"CASE WHEN jsonb_typeof(properties #> {path}) = 'number' "
                              f"THEN (properties #>> {path})::numeric END")
        if projection.aggregate == "sum":
            selects.append(f"coalesce(sum({expression}), 0)")
        elif projection.aggregate in ("max", "min"):
            selects.append(f"{projection.aggregate}({expression})")
        else:  # latest
            selects.append(f"(array_agg({expression} ORDER BY occurred_at DESC, seq DESC))[1]")
    sql = (
        f"SELECT customer_id::text, max(occurred_at), "
        f"(array_agg(source ORDER BY occurred_at DESC, seq DESC))[1], {', '.join(selects)} "
        f"FROM {S}.events WHERE customer_id = ANY($1::uuid[]) AND type = ANY($2::text[]) "
        f"GROUP BY customer_id"
    )
    rows = await connection.fetch(sql, *values)
    result: dict[str, tuple[dict[str, Any], datetime, str]] = {}
    for row in rows:
        computed = {p.attribute: _plain(row[3 + i]) for i, p in enumerate(projections)}
        result[row[0]] = (computed, row[1], row[2])
    return result


def _plain(value: Any) -> Any:
    """JSON-ready: jsonb arrives as text, numerics as Decimal, times as datetime."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# --- identity changes -------------------------------------------------------------------------

async def repoint_customer(connection: TracedConnection, old: str, new: str) -> int:
    status: str = await connection.execute(
        f"UPDATE {S}.events SET customer_id = $2::uuid WHERE customer_id = $1::uuid", old, new
    )
    return int(status.split()[-1])


async def restore_customer(connection: TracedConnection, restored: str) -> int:
    status: str = await connection.execute(
        f"UPDATE {S}.events SET customer_id = resolved_customer_id "
        f"WHERE resolved_customer_id = $1::uuid", restored
    )
    return int(status.split()[-1])


async def delete_customers(connection: TracedConnection, customer_ids: Sequence[str]) -> int:
    status: str = await connection.execute(
        f"DELETE FROM {S}.events WHERE customer_id = ANY($1::uuid[]) "
        f"OR resolved_customer_id = ANY($1::uuid[])",
        list(customer_ids),
    )
    return int(status.split()[-1])
