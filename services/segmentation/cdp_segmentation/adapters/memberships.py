"""Stored membership, kept current in PostgreSQL, and the work each change creates.

Two ways in, both set-based:

- `evaluate_customers`: the customers a batch of profile events changed, against every
  segment at once. One statement evaluates all segments' predicates for those customers
  (a LATERAL VALUES row per segment), inserts who entered, deletes who left, and queues the
  delta for each segment's platforms. Its text depends only on the segments, so it is built
  once per catalog version and prepared once per connection.
- `evaluate_segment`: one segment against the whole read model (on create and update), or
  against the candidates whose withinLast windows time has moved past. The changes are
  staged in `membership_changes` inside the transaction, then turned into the delta and,
  for realtime segments, into `cdp.segment.membership` outbox rows written with COPY in
  chunks, so a segment of millions never sits in memory.

Every writer of memberships holds the membership lock (shared for per-customer writes,
exclusive for segment-wide ones), which is what makes "evaluated with the segments that were
current" and "a snapshot of the membership" mean something across replicas.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdp_bus import OutboxMessage
from cdp_db import TracedConnection
from cdp_segmentation.adapters.messages import membership_message
from cdp_segmentation.adapters.sql_compiler import (
    SCHEMA,
    DeclaredColumn,
    Params,
    compile_predicate,
    profiles_from,
    window_candidates,
)
from cdp_segmentation.domain.events import Change, MembershipChanged
from cdp_segmentation.domain.model import Member, Segment

MEMBERSHIP_LOCK = zlib.crc32(b"cdp-segmentation:memberships") & 0x7FFFFFFF
ADD, REMOVE = 1, 2
EVENT_CHUNK = 5000


@dataclass(frozen=True)
class CatalogVersions:
    segments: int
    fields: int


async def lock_memberships(connection: TracedConnection, *, exclusive: bool) -> CatalogVersions:
    """Takes the membership lock for the transaction; returns the catalog versions seen
    after it was granted."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    row = await connection.fetchrow(
        f"SELECT {function}($1, 0), "
        f"(SELECT version FROM {SCHEMA}.catalog_versions WHERE name = 'segments') AS segments, "
        f"(SELECT version FROM {SCHEMA}.catalog_versions WHERE name = 'fields') AS fields",
        MEMBERSHIP_LOCK,
    )
    return CatalogVersions(int(row["segments"]), int(row["fields"]))


@dataclass(frozen=True)
class EvaluationPlan:
    """Every segment's predicate in one statement, for a set of customers."""

    sql: str | None
    params: Params
    segment_ids: tuple[str, ...]


def build_evaluation_plan(
    segments: Sequence[Segment], columns: dict[str, DeclaredColumn]
) -> EvaluationPlan:
    if not segments:
        return EvaluationPlan(None, Params(first=3), ())
    params = Params(first=3)
    rows = []
    uses_document = False
    for segment in segments:
        segment_param = params.add(segment.id, "uuid")
        compiled = compile_predicate(segment.definition.criteria, columns, params)
        uses_document = uses_document or compiled.uses_document
        rows.append(f"({segment_param}, {compiled.sql})")
    source = f"{SCHEMA}.profiles p"
    if uses_document:
        source += f" LEFT JOIN {SCHEMA}.profile_documents d ON d.customer_id = p.customer_id"
    sql = f"""
WITH evaluated AS (
  SELECT p.customer_id, e.segment_id
  FROM {source}
  CROSS JOIN LATERAL (VALUES {", ".join(rows)}) AS e(segment_id, member)
  WHERE p.customer_id = ANY($1::uuid[]) AND p.status = 0 AND e.member
),
entered AS (
  INSERT INTO {SCHEMA}.memberships (segment_id, customer_id, entered_at)
  SELECT segment_id, customer_id, $2::timestamptz FROM evaluated
  ON CONFLICT DO NOTHING
  RETURNING segment_id, customer_id
),
exited AS (
  DELETE FROM {SCHEMA}.memberships m
  WHERE m.customer_id = ANY($1::uuid[])
    AND NOT EXISTS (
      SELECT 1 FROM evaluated e
      WHERE e.segment_id = m.segment_id AND e.customer_id = m.customer_id)
  RETURNING m.segment_id, m.customer_id
),
changes AS (
  SELECT segment_id, customer_id, {ADD}::smallint AS action FROM entered
  UNION ALL
  SELECT segment_id, customer_id, {REMOVE}::smallint FROM exited
),
pending AS (
  INSERT INTO {SCHEMA}.pending_deltas (segment_id, platform, customer_id, action, seq)
  SELECT c.segment_id, pl.platform, c.customer_id, c.action, nextval('{SCHEMA}.delta_seq')
  FROM changes c
  JOIN {SCHEMA}.segments s ON s.id = c.segment_id
  CROSS JOIN LATERAL unnest(s.platforms) AS pl(platform)
  ON CONFLICT (segment_id, platform, customer_id) DO UPDATE
    SET action = excluded.action, seq = excluded.seq, erasure = false
)
SELECT segment_id, customer_id, action FROM changes
"""
    return EvaluationPlan(sql, params, tuple(s.id for s in segments))


class MembershipStore:
    def __init__(self, connection: TracedConnection) -> None:
        self._c = connection

    async def evaluate_customers(
        self, plan: EvaluationPlan, customer_ids: Sequence[str], now: datetime
    ) -> list[MembershipChanged]:
        if not customer_ids:
            return []
        if plan.sql is None:
            # No segment: nothing to enter, and nobody can be in one.
            return []
        rows = await self._c.fetch(plan.sql, list(customer_ids), now, *plan.params.bind(now))
        return [
            MembershipChanged(
                str(r["segment_id"]),
                str(r["customer_id"]),
                Change.ENTERED if r["action"] == ADD else Change.EXITED,
                now,
            )
            for r in rows
        ]

    async def evaluate_segment(
        self,
        segment: Segment,
        columns: dict[str, DeclaredColumn],
        now: datetime,
        *,
        since: datetime | None = None,
    ) -> tuple[int, int, uuid.UUID]:
        """Re-evaluates one segment: everyone, or (with `since`) the customers whose
        withinLast windows moved between `since` and `now`. Stages the changes; returns
        (entered, exited, run id). Call `queue_staged` next, in the same transaction."""
        run = uuid.uuid4()
        params = Params(first=4)
        compiled = compile_predicate(segment.definition.criteria, columns, params)
        candidates = ""
        exited_scope = ""
        uses_document = compiled.uses_document
        if since is not None:
            window = window_candidates(
                segment.definition.criteria, columns, params, since=since, until=now
            )
            uses_document = uses_document or window.uses_document
            candidates = (
                f"candidates AS (SELECT p.customer_id FROM {profiles_from(window.uses_document)} "
                f"WHERE p.status = 0 AND {window.sql}),"
            )
            exited_scope = "AND m.customer_id IN (SELECT customer_id FROM candidates)"
        scope = "AND p.customer_id IN (SELECT customer_id FROM candidates)" if since else ""
        sql = f"""
WITH {candidates}
evaluated AS (
  SELECT p.customer_id FROM {profiles_from(uses_document)}
  WHERE p.status = 0 {scope} AND {compiled.sql}
),
entered AS (
  INSERT INTO {SCHEMA}.memberships (segment_id, customer_id, entered_at)
  SELECT $1::uuid, customer_id, $2::timestamptz FROM evaluated
  ON CONFLICT DO NOTHING
  RETURNING customer_id
),
exited AS (
  DELETE FROM {SCHEMA}.memberships m
  WHERE m.segment_id = $1::uuid {exited_scope}
    AND NOT EXISTS (SELECT 1 FROM evaluated e WHERE e.customer_id = m.customer_id)
  RETURNING m.customer_id
)
INSERT INTO {SCHEMA}.membership_changes (run_id, customer_id, entered)
SELECT $3::uuid, customer_id, true FROM entered
UNION ALL
SELECT $3::uuid, customer_id, false FROM exited
"""
        await self._c.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        await self._c.execute(sql, segment.id, now, run, *params.bind(now))
        row = await self._c.fetchrow(
            f"SELECT count(*) FILTER (WHERE entered) AS entered, "
            f"count(*) FILTER (WHERE NOT entered) AS exited "
            f"FROM {SCHEMA}.membership_changes WHERE run_id = $1",
            run,
        )
        return int(row["entered"]), int(row["exited"]), run

    async def queue_staged(
        self, segment: Segment, run: uuid.UUID, now: datetime, *, publish: bool
    ) -> int:
        """The delta for every platform, and (when `publish`) one outbox row per change, for
        the changes staged by `run`; then forgets them. Returns the outbox rows written."""
        platforms = list(segment.definition.platforms)
        if platforms:
            await self._c.execute(
                f"""
INSERT INTO {SCHEMA}.pending_deltas (segment_id, platform, customer_id, action, seq)
SELECT $1::uuid, pl.platform, c.customer_id,
       CASE WHEN c.entered THEN {ADD} ELSE {REMOVE} END, nextval('{SCHEMA}.delta_seq')
FROM {SCHEMA}.membership_changes c CROSS JOIN unnest($3::text[]) AS pl(platform)
WHERE c.run_id = $2
ON CONFLICT (segment_id, platform, customer_id) DO UPDATE
  SET action = excluded.action, seq = excluded.seq, erasure = false
""",
                segment.id,
                run,
                platforms,
            )
        written = 0
        if publish:
            after: Any = None
            while True:
                # Keyset pages over the staged rows: flat memory whatever the change count.
                rows = await self._c.fetch(
                    f"SELECT customer_id, entered FROM {SCHEMA}.membership_changes "
                    "WHERE run_id = $1 AND ($2::uuid IS NULL OR customer_id > $2) "
                    "ORDER BY customer_id LIMIT $3",
                    run,
                    after,
                    EVENT_CHUNK,
                )
                if not rows:
                    break
                messages = [
                    membership_message(
                        MembershipChanged(
                            segment.id,
                            str(r["customer_id"]),
                            Change.ENTERED if r["entered"] else Change.EXITED,
                            now,
                        )
                    )
                    for r in rows
                ]
                await copy_to_outbox(self._c, messages)
                written += len(messages)
                after = rows[-1]["customer_id"]
        await self._c.execute(f"DELETE FROM {SCHEMA}.membership_changes WHERE run_id = $1", run)
        return written

    async def forget(self, customer_ids: Sequence[str]) -> None:
        """Erased customers: whatever a platform holds of them goes out as a removal at the
        next sync tick, whatever the schedule; nothing else is queued for them."""
        if not customer_ids:
            return
        await self._c.execute(
            f"""
INSERT INTO {SCHEMA}.pending_deltas (segment_id, platform, customer_id, action, seq, erasure)
SELECT segment_id, platform, customer_id, {REMOVE}, nextval('{SCHEMA}.delta_seq'), true
FROM {SCHEMA}.platform_members WHERE customer_id = ANY($1::uuid[])
ON CONFLICT (segment_id, platform, customer_id) DO UPDATE
  SET action = {REMOVE}, seq = excluded.seq, erasure = true
""",
            list(customer_ids),
        )
        # Additions nobody has received yet have nothing to undo.
        await self._c.execute(
            f"DELETE FROM {SCHEMA}.pending_deltas d WHERE d.customer_id = ANY($1::uuid[]) "
            f"AND NOT d.erasure",
            list(customer_ids),
        )

    async def requeue_changed_emails(self, customer_ids: Sequence[str]) -> None:
        """Members whose email changed: each platform holding them under another email (or
        not at all) gets them again, so the platform's segment follows the new address."""
        if not customer_ids:
            return
        await self._c.execute(
            f"""
INSERT INTO {SCHEMA}.pending_deltas (segment_id, platform, customer_id, action, seq)
SELECT m.segment_id, pl.platform, m.customer_id, {ADD}, nextval('{SCHEMA}.delta_seq')
FROM {SCHEMA}.memberships m
JOIN {SCHEMA}.segments s ON s.id = m.segment_id
CROSS JOIN LATERAL unnest(s.platforms) AS pl(platform)
JOIN {SCHEMA}.profiles p ON p.customer_id = m.customer_id
LEFT JOIN {SCHEMA}.platform_members pm
  ON pm.segment_id = m.segment_id AND pm.platform = pl.platform
 AND pm.customer_id = m.customer_id
WHERE m.customer_id = ANY($1::uuid[]) AND pm.email IS DISTINCT FROM p.email
ON CONFLICT (segment_id, platform, customer_id) DO UPDATE
  SET action = {ADD}, seq = excluded.seq, erasure = false
""",
            list(customer_ids),
        )

    async def queue_all_members(self, segment_id: str, platforms: Sequence[str]) -> None:
        """A platform newly added to a segment receives the whole membership."""
        if not platforms:
            return
        await self._c.execute(
            f"""
INSERT INTO {SCHEMA}.pending_deltas (segment_id, platform, customer_id, action, seq)
SELECT m.segment_id, pl.platform, m.customer_id, {ADD}, nextval('{SCHEMA}.delta_seq')
FROM {SCHEMA}.memberships m CROSS JOIN unnest($2::text[]) AS pl(platform)
WHERE m.segment_id = $1
ON CONFLICT (segment_id, platform, customer_id) DO UPDATE
  SET action = {ADD}, seq = excluded.seq, erasure = false
""",
            segment_id,
            list(platforms),
        )

    async def page(self, segment_id: str, *, after: str | None, limit: int) -> list[Member]:
        """Members in customer id order, after `after` (keyset pagination on the key)."""
        if after is None:
            rows = await self._c.fetch(
                f"SELECT customer_id, entered_at FROM {SCHEMA}.memberships "
                "WHERE segment_id = $1 ORDER BY customer_id LIMIT $2",
                segment_id,
                limit,
            )
        else:
            rows = await self._c.fetch(
                f"SELECT customer_id, entered_at FROM {SCHEMA}.memberships "
                "WHERE segment_id = $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3",
                segment_id,
                after,
                limit,
            )
        return [Member(str(r["customer_id"]), r["entered_at"]) for r in rows]

    async def count(self, segment_id: str) -> int:
        value: int = await self._c.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.memberships WHERE segment_id = $1", segment_id
        )
        return value


def _outbox_rows(messages: Sequence[OutboxMessage]) -> Iterator[tuple[str, str, str, bytes]]:
    for message in messages:
        headers = message.event.headers()
        headers.update(message.trace_headers)
        yield (message.event.id, message.subject, json.dumps(headers), message.event.data)


async def copy_to_outbox(connection: TracedConnection, messages: Sequence[OutboxMessage]) -> None:
    """Outbox rows by COPY: the same rows `SqlOutbox.write` makes, for many at once."""
    if not messages:
        return
    await connection.raw.copy_records_to_table(
        "outbox",
        schema_name=SCHEMA,
        columns=["message_id", "subject", "headers", "body"],
        records=list(_outbox_rows(messages)),
    )

