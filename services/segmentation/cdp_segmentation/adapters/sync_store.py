"""The bookkeeping of syncing segments to platforms.

Per (segment, platform) the service keeps what the platform holds (`platform_members`, with
the email it was sent under) and the delta it has not received (`pending_deltas`, one row per
member, the latest change winning). A sync reads a chunk of the delta, sends it, and only
when the connector has answered removes what was sent from the delta, in one transaction
with recording what the platform now holds. A failed call changes nothing, so the next
attempt sends the same delta again; a row rewritten while its chunk was in flight keeps its
new `seq` and stays (the guard on every delete), so a late change is never lost.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import asyncpg

from cdp_db import Database, TracedConnection
from cdp_segmentation.adapters.memberships import ADD, REMOVE
from cdp_segmentation.adapters.sql_compiler import SCHEMA

SYNC_LOCK = zlib.crc32(b"cdp-segmentation:sync") & 0x7FFFFFFF


def sync_lock_key(segment_id: str, platform: str) -> int:
    """The second key of the advisory lock held while one (segment, platform) syncs."""
    return zlib.crc32(f"{segment_id}/{platform}".encode()) & 0x7FFFFFFF


class DueReason(StrEnum):
    SCHEDULE = "schedule"
    REALTIME = "realtime"
    ERASURE = "erasure"


@dataclass(frozen=True)
class DueSync:
    segment_id: str
    platform: str
    reason: DueReason


@dataclass(frozen=True)
class Addition:
    customer_id: str
    seq: int
    email: str | None
    # The email the platform holds the customer under, when it differs (the email changed).
    previous_email: str | None


@dataclass(frozen=True)
class Removal:
    customer_id: str
    seq: int
    email: str | None
    # Another member the platform keeps holds the same email: do not remove it.
    shared: bool


@dataclass
class Chunk:
    additions: list[Addition] = field(default_factory=list)
    removals: list[Removal] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.additions or self.removals)


@dataclass(frozen=True)
class Applied:
    """What the platform took from a chunk: rows to drop from the delta, platform state."""

    # (customer id, seq) of delta rows that are done (sent, skipped, or refused for good).
    done: list[tuple[str, int]]
    # customer id -> email the platform now holds them under.
    held: dict[str, str]
    # Customers the platform no longer holds.
    released: list[str]


class SyncStore:
    def __init__(self, connection: TracedConnection) -> None:
        self._c = connection

    async def due(self, now: datetime) -> list[DueSync]:
        rows = await self._c.fetch(
            f"""
SELECT st.segment_id, st.platform,
  CASE
    WHEN s.schedule_kind <> 'realtime' AND st.next_run_at <= $1 THEN 'schedule'
    WHEN s.schedule_kind = 'realtime' AND EXISTS (
      SELECT 1 FROM {SCHEMA}.pending_deltas d
      WHERE d.segment_id = st.segment_id AND d.platform = st.platform) THEN 'realtime'
    WHEN EXISTS (
      SELECT 1 FROM {SCHEMA}.pending_deltas d
      WHERE d.segment_id = st.segment_id AND d.platform = st.platform AND d.erasure) THEN 'erasure'
  END AS reason
FROM {SCHEMA}.sync_states st JOIN {SCHEMA}.segments s ON s.id = st.segment_id
WHERE st.retry_at IS NULL OR st.retry_at <= $1
""",
            now,
        )
        return [
            DueSync(str(r["segment_id"]), r["platform"], DueReason(r["reason"]))
            for r in rows
            if r["reason"] is not None
        ]

    async def high_water(self, segment_id: str, platform: str) -> int:
        value = await self._c.fetchval(
            f"SELECT coalesce(max(seq), 0) FROM {SCHEMA}.pending_deltas "
            "WHERE segment_id = $1 AND platform = $2",
            segment_id,
            platform,
        )
        return int(value)

    async def chunk(
        self,
        segment_id: str,
        platform: str,
        *,
        limit: int,
        up_to_seq: int,
        after_addition: int = 0,
        after_removal: int = 0,
        erasures_only: bool = False,
    ) -> Chunk:
        """The oldest part of the delta: at most `limit` additions and `limit` removals, past
        the cursors (the last seq of each kind already handled in this run)."""
        chunk = Chunk()
        erasure = "AND d.erasure" if erasures_only else ""
        if not erasures_only:
            rows = await self._c.fetch(
                f"""
SELECT d.customer_id, d.seq, p.email, pm.email AS held
FROM {SCHEMA}.pending_deltas d
LEFT JOIN {SCHEMA}.profiles p ON p.customer_id = d.customer_id
LEFT JOIN {SCHEMA}.platform_members pm
  ON pm.segment_id = d.segment_id AND pm.platform = d.platform
 AND pm.customer_id = d.customer_id
WHERE d.segment_id = $1 AND d.platform = $2 AND d.action = {ADD} AND d.seq <= $3
  AND d.seq > $5
ORDER BY d.seq LIMIT $4
""",
                segment_id,
                platform,
                up_to_seq,
                limit,
                after_addition,
            )
            chunk.additions = [
                Addition(str(r["customer_id"]), r["seq"], r["email"], r["held"]) for r in rows
            ]
        rows = await self._c.fetch(
            f"""
SELECT d.customer_id, d.seq, pm.email,
  EXISTS (
    SELECT 1 FROM {SCHEMA}.platform_members o
    WHERE o.segment_id = d.segment_id AND o.platform = d.platform
      AND o.email = pm.email AND o.customer_id <> d.customer_id
      AND NOT EXISTS (
        SELECT 1 FROM {SCHEMA}.pending_deltas x
        WHERE x.segment_id = o.segment_id AND x.platform = o.platform
          AND x.customer_id = o.customer_id AND x.action = {REMOVE})
  ) AS shared
FROM {SCHEMA}.pending_deltas d
LEFT JOIN {SCHEMA}.platform_members pm
  ON pm.segment_id = d.segment_id AND pm.platform = d.platform
 AND pm.customer_id = d.customer_id
WHERE d.segment_id = $1 AND d.platform = $2 AND d.action = {REMOVE} AND d.seq <= $3 {erasure}
  AND d.seq > $5
ORDER BY d.seq LIMIT $4
""",
            segment_id,
            platform,
            up_to_seq,
            limit,
            after_removal,
        )
        chunk.removals = [
            Removal(str(r["customer_id"]), r["seq"], r["email"], bool(r["shared"])) for r in rows
        ]
        return chunk

    async def apply(self, segment_id: str, platform: str, applied: Applied, now: datetime) -> None:
        """Records what the platform took; drops the delta rows that are done (unless they
        changed while the chunk was in flight)."""
        if applied.released:
            await self._c.execute(
                f"DELETE FROM {SCHEMA}.platform_members WHERE segment_id = $1 AND platform = $2 "
                "AND customer_id = ANY($3::uuid[])",
                segment_id,
                platform,
                applied.released,
            )
        if applied.held:
            await self._c.execute(
                f"""
INSERT INTO {SCHEMA}.platform_members (segment_id, platform, customer_id, email, synced_at)
SELECT $1, $2, customer_id, email, $5
FROM unnest($3::uuid[], $4::text[]) AS h(customer_id, email)
ON CONFLICT (segment_id, platform, customer_id)
  DO UPDATE SET email = excluded.email, synced_at = excluded.synced_at
""",
                segment_id,
                platform,
                list(applied.held),
                list(applied.held.values()),
                now,
            )
        if applied.done:
            await self._c.execute(
                f"""
DELETE FROM {SCHEMA}.pending_deltas d
USING unnest($3::uuid[], $4::bigint[]) AS x(customer_id, seq)
WHERE d.segment_id = $1 AND d.platform = $2
  AND d.customer_id = x.customer_id AND d.seq = x.seq
""",
                segment_id,
                platform,
                [c for c, _ in applied.done],
                [s for _, s in applied.done],
            )

    # ---- full re-sync ---------------------------------------------------------------------

    async def member_total(self, segment_id: str) -> int:
        value: int = await self._c.fetchval(
            f"SELECT count(*) FROM {SCHEMA}.memberships WHERE segment_id = $1", segment_id
        )
        return value

    async def members_with_email(self, segment_id: str) -> list[tuple[str, str | None]]:
        rows = await self._c.fetch(
            f"SELECT m.customer_id, p.email FROM {SCHEMA}.memberships m "
            f"JOIN {SCHEMA}.profiles p ON p.customer_id = m.customer_id "
            "WHERE m.segment_id = $1 ORDER BY m.customer_id",
            segment_id,
        )
        return [(str(r["customer_id"]), r["email"]) for r in rows]

    async def replace_platform_members(
        self,
        segment_id: str,
        platform: str,
        held: dict[str, str],
        *,
        up_to_seq: int,
        retry: Sequence[str],
        now: datetime,
    ) -> None:
        """After a full mirror: the platform holds exactly `held`; the delta up to the
        snapshot is done, except `retry` (members it could not take this time)."""
        await self._c.execute(
            f"DELETE FROM {SCHEMA}.platform_members WHERE segment_id = $1 AND platform = $2",
            segment_id,
            platform,
        )
        await self.apply(segment_id, platform, Applied(done=[], held=held, released=[]), now)
        await self._c.execute(
            f"DELETE FROM {SCHEMA}.pending_deltas WHERE segment_id = $1 AND platform = $2 "
            "AND seq <= $3",
            segment_id,
            platform,
            up_to_seq,
        )
        if retry:
            await self._c.execute(
                f"""
INSERT INTO {SCHEMA}.pending_deltas (segment_id, platform, customer_id, action, seq)
SELECT $1, $2, customer_id, {ADD}, nextval('{SCHEMA}.delta_seq')
FROM unnest($3::uuid[]) AS r(customer_id)
ON CONFLICT (segment_id, platform, customer_id) DO NOTHING
""",
                segment_id,
                platform,
                list(retry),
            )

    # ---- results --------------------------------------------------------------------------

    async def record_run(
        self,
        segment_id: str,
        platform: str,
        *,
        started_at: datetime,
        finished_at: datetime,
        full_resync: bool,
        success: bool,
        calls: int,
        added: int,
        removed: int,
        failed: int,
        error: str,
        permanent: bool,
        retry_at: datetime | None,
        next_run_at: datetime | None,
        advance_schedule: bool,
    ) -> None:
        await self._c.execute(
            f"""
INSERT INTO {SCHEMA}.sync_runs (segment_id, platform, started_at, finished_at, full_resync,
  success, calls, added, removed, failed, error, permanent)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
WHERE EXISTS (SELECT 1 FROM {SCHEMA}.segments WHERE id = $1)
""",
            segment_id,
            platform,
            started_at,
            finished_at,
            full_resync,
            success,
            calls,
            added,
            removed,
            failed,
            error,
            permanent,
        )
        if success:
            await self._c.execute(
                f"""
UPDATE {SCHEMA}.sync_states SET last_attempt_at = $3, last_success_at = $3, last_error = '',
  consecutive_failures = 0, retry_at = NULL,
  next_run_at = CASE WHEN $5 THEN $4 ELSE next_run_at END
WHERE segment_id = $1 AND platform = $2
""",
                segment_id,
                platform,
                finished_at,
                next_run_at,
                advance_schedule,
            )
        else:
            await self._c.execute(
                f"""
UPDATE {SCHEMA}.sync_states SET last_attempt_at = $3, last_error = $4,
  consecutive_failures = consecutive_failures + 1, retry_at = $5
WHERE segment_id = $1 AND platform = $2
""",
                segment_id,
                platform,
                finished_at,
                error,
                retry_at,
            )

    async def consecutive_failures(self, segment_id: str, platform: str) -> int:
        value = await self._c.fetchval(
            f"SELECT consecutive_failures FROM {SCHEMA}.sync_states "
            "WHERE segment_id = $1 AND platform = $2",
            segment_id,
            platform,
        )
        return int(value or 0)

    async def prune_runs(self, before: datetime) -> None:
        await self._c.execute(f"DELETE FROM {SCHEMA}.sync_runs WHERE finished_at < $1", before)


class AdvisorySyncLock:
    """The cross-replica lock on one (segment, platform) sync: a transaction-level advisory
    lock on a connection of its own, whose transaction stays open for the whole run (which
    spans connector calls and several short transactions of other connections). Whatever
    ends the run (done, failed, cancelled, the connection lost) ends that transaction and so
    releases the lock; none can be left behind on a pooled connection."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @asynccontextmanager
    async def __call__(
        self, segment_id: str, platform: str, *, wait_seconds: float = 0.0
    ) -> AsyncIterator[bool]:
        key = sync_lock_key(segment_id, platform)
        async with self._database.raw_connection() as connection, connection.transaction():
            if wait_seconds <= 0:
                acquired = bool(
                    await connection.fetchval(
                        "SELECT pg_try_advisory_xact_lock($1, $2)", SYNC_LOCK, key
                    )
                )
            else:
                # lock_timeout bounds advisory lock waits too; SET LOCAL takes no parameters.
                await connection.execute(
                    f"SET LOCAL lock_timeout = {max(1, round(wait_seconds * 1000))}"
                )
                try:
                    await connection.execute(
                        "SELECT pg_advisory_xact_lock($1, $2)", SYNC_LOCK, key
                    )
                    acquired = True
                except asyncpg.LockNotAvailableError:
                    acquired = False
            yield acquired
