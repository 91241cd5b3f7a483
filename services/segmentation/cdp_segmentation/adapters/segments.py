"""Segment definitions and what GetSegment shows about them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from cdp_db import TracedConnection
from cdp_errors import AlreadyExists, NotFound
from cdp_segmentation.adapters.sql_compiler import SCHEMA
from cdp_segmentation.domain.criteria import criteria_from_document, to_document
from cdp_segmentation.domain.model import (
    PlatformSyncStatus,
    Schedule,
    ScheduleKind,
    Segment,
    SegmentDefinition,
)

_COLUMNS = (
    "id, name, description, criteria, platforms, schedule_kind, schedule_cron, revision, "
    "created_at, updated_at, time_evaluated_at"
)


def _document(value: Any) -> Any:
    """A jsonb value: SQLAlchemy's connections decode it, plain asyncpg ones give text."""
    return json.loads(value) if isinstance(value, str) else value


def segment_of(row: Any) -> Segment:
    return Segment(
        id=str(row["id"]),
        definition=SegmentDefinition(
            name=row["name"],
            description=row["description"],
            criteria=criteria_from_document(_document(row["criteria"])),
            platforms=tuple(row["platforms"]),
            schedule=Schedule(ScheduleKind(row["schedule_kind"]), row["schedule_cron"]),
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revision=int(row["revision"]),
    )


class SegmentStore:
    def __init__(self, connection: TracedConnection) -> None:
        self._c = connection

    async def bump_version(self) -> None:
        await self._c.execute(
            f"UPDATE {SCHEMA}.catalog_versions SET version = version + 1 WHERE name = 'segments'"
        )

    async def insert(self, segment: Segment) -> None:
        definition = segment.definition
        try:
            await self._c.execute(
                f"INSERT INTO {SCHEMA}.segments ({_COLUMNS}) "
                "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $9)",
                segment.id,
                definition.name,
                definition.description,
                json.dumps(to_document(definition.criteria)),
                list(definition.platforms),
                definition.schedule.kind.value,
                definition.schedule.cron,
                segment.revision,
                segment.created_at,
                segment.updated_at,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("segment named", definition.name) from None

    async def update(self, segment: Segment) -> None:
        definition = segment.definition
        try:
            status = await self._c.execute(
                f"UPDATE {SCHEMA}.segments SET name = $2, description = $3, criteria = $4::jsonb, "
                "platforms = $5, schedule_kind = $6, schedule_cron = $7, revision = $8, "
                "updated_at = $9 WHERE id = $1",
                segment.id,
                definition.name,
                definition.description,
                json.dumps(to_document(definition.criteria)),
                list(definition.platforms),
                definition.schedule.kind.value,
                definition.schedule.cron,
                segment.revision,
                segment.updated_at,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("segment named", definition.name) from None
        if status.endswith(" 0"):
            raise NotFound("segment", segment.id)

    async def delete(self, segment_id: str) -> None:
        status = await self._c.execute(f"DELETE FROM {SCHEMA}.segments WHERE id = $1", segment_id)
        if status.endswith(" 0"):
            raise NotFound("segment", segment_id)

    async def get(self, segment_id: str, *, for_update: bool = False) -> Segment:
        lock = " FOR UPDATE" if for_update else ""
        row = await self._c.fetchrow(
            f"SELECT {_COLUMNS} FROM {SCHEMA}.segments WHERE id = $1{lock}", segment_id
        )
        if row is None:
            raise NotFound("segment", segment_id)
        return segment_of(row)

    async def all(self) -> list[Segment]:
        rows = await self._c.fetch(f"SELECT {_COLUMNS} FROM {SCHEMA}.segments ORDER BY name")
        return [segment_of(row) for row in rows]

    async def time_evaluated_at(self, segment_id: str) -> datetime | None:
        value: datetime | None = await self._c.fetchval(
            f"SELECT time_evaluated_at FROM {SCHEMA}.segments WHERE id = $1", segment_id
        )
        return value

    async def set_time_evaluated_at(self, segment_id: str, at: datetime) -> None:
        await self._c.execute(
            f"UPDATE {SCHEMA}.segments SET time_evaluated_at = $2 WHERE id = $1", segment_id, at
        )

    async def set_platforms(
        self,
        segment_id: str,
        platforms: Sequence[str],
        next_runs: dict[str, datetime | None],
    ) -> list[str]:
        """Sync states for exactly `platforms` (what a dropped platform had is forgotten);
        returns the platforms that are new to the segment."""
        await self._c.execute(
            f"DELETE FROM {SCHEMA}.pending_deltas WHERE segment_id = $1 "
            "AND NOT (platform = ANY($2::text[]))",
            segment_id,
            list(platforms),
        )
        await self._c.execute(
            f"DELETE FROM {SCHEMA}.platform_members WHERE segment_id = $1 "
            "AND NOT (platform = ANY($2::text[]))",
            segment_id,
            list(platforms),
        )
        await self._c.execute(
            f"DELETE FROM {SCHEMA}.sync_states WHERE segment_id = $1 "
            "AND NOT (platform = ANY($2::text[]))",
            segment_id,
            list(platforms),
        )
        rows = await self._c.fetch(
            f"""
INSERT INTO {SCHEMA}.sync_states (segment_id, platform, next_run_at)
SELECT $1, platform, next_run FROM unnest($2::text[], $3::timestamptz[]) AS n(platform, next_run)
ON CONFLICT (segment_id, platform) DO UPDATE SET next_run_at = excluded.next_run_at
RETURNING platform, (xmax = 0) AS inserted
""",
            segment_id,
            list(platforms),
            [next_runs.get(p) for p in platforms],
        )
        return [r["platform"] for r in rows if r["inserted"]]

    async def sync_status(self, segment_ids: Sequence[str]) -> dict[str, list[PlatformSyncStatus]]:
        rows = await self._c.fetch(
            f"""
SELECT st.segment_id, st.platform, st.last_success_at, st.last_attempt_at, st.last_error,
       st.consecutive_failures, st.next_run_at,
       (SELECT count(*) FROM {SCHEMA}.pending_deltas d WHERE d.segment_id = st.segment_id
          AND d.platform = st.platform AND d.action = 1) AS additions,
       (SELECT count(*) FROM {SCHEMA}.pending_deltas d WHERE d.segment_id = st.segment_id
          AND d.platform = st.platform AND d.action = 2) AS removals,
       (SELECT count(*) FROM {SCHEMA}.platform_members pm WHERE pm.segment_id = st.segment_id
          AND pm.platform = st.platform) AS on_platform
FROM {SCHEMA}.sync_states st WHERE st.segment_id = ANY($1::uuid[])
ORDER BY st.platform
""",
            list(segment_ids),
        )
        found: dict[str, list[PlatformSyncStatus]] = {}
        for r in rows:
            found.setdefault(str(r["segment_id"]), []).append(
                PlatformSyncStatus(
                    platform=r["platform"],
                    last_success_at=r["last_success_at"],
                    last_attempt_at=r["last_attempt_at"],
                    last_error=r["last_error"],
                    consecutive_failures=r["consecutive_failures"],
                    pending_additions=r["additions"],
                    pending_removals=r["removals"],
                    members_on_platform=r["on_platform"],
                    next_sync_at=r["next_run_at"],
                )
            )
        return found

    async def member_counts(self, segment_ids: Sequence[str]) -> dict[str, int]:
        rows = await self._c.fetch(
            f"SELECT s.id, (SELECT count(*) FROM {SCHEMA}.memberships m "
            "WHERE m.segment_id = s.id) AS members "
            f"FROM {SCHEMA}.segments s WHERE s.id = ANY($1::uuid[])",
            list(segment_ids),
        )
        return {str(r["id"]): int(r["members"]) for r in rows}
