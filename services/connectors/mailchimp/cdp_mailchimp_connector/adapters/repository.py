"""The connector's stores over PostgreSQL: failed operations, inbound items, segment map,
pull cursors and the routed events applied. Each call is its own short transaction;
uniqueness is the database's job (`ON CONFLICT`), never a check-then-insert."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, select, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cdp_bus.inbox import Inbox
from cdp_mailchimp_connector.adapters.tables import (
    SCHEMA,
    cursors,
    failed_operations,
    inbound_items,
    segments,
)
from cdp_mailchimp_connector.domain.model import FailedOperation, NewFailure, OperationKind
from cdp_mailchimp_connector.service_layer.ports import InboundItem

# Delivered items are kept this long so a redelivered webhook is recognised and dropped.
DELIVERED_RETENTION = timedelta(days=2)


def _operation(row: Any) -> FailedOperation:
    return FailedOperation(
        id=row.id,
        kind=OperationKind(row.operation),
        subject_id=row.subject_id,
        error=row.error,
        permanent=row.permanent,
        attempts=row.attempts,
        first_failed_at=row.first_failed_at,
        last_failed_at=row.last_failed_at,
        payload=row.payload,
    )


class SqlFailureStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(self, failures: Sequence[NewFailure], now: datetime) -> None:
        if not failures:
            return
        latest = {(f.kind.value, f.subject_id): f for f in failures}
        rows = [
            {
                "id": str(uuid.uuid4()),
                "operation": kind,
                "subject_id": subject,
                "payload": f.payload,
                "error": f.error[:1000],
                "permanent": f.permanent,
                "attempts": 1,
                "first_failed_at": now,
                "last_failed_at": now,
            }
            for (kind, subject), f in latest.items()
        ]
        statement = insert(failed_operations).values(rows)
        statement = statement.on_conflict_do_update(
            constraint="failed_operations_subject_key",
            set_={
                "payload": statement.excluded.payload,
                "error": statement.excluded.error,
                "permanent": statement.excluded.permanent,
                "attempts": failed_operations.c.attempts + 1,
                "last_failed_at": statement.excluded.last_failed_at,
            },
        )
        async with self._sessions.begin() as session:
            await session.execute(statement)

    async def page(
        self, *, limit: int, include_permanent: bool
    ) -> tuple[list[FailedOperation], int]:
        condition = true() if include_permanent else failed_operations.c.permanent.is_(False)
        async with self._sessions() as session:
            rows = await session.execute(
                select(failed_operations)
                .where(condition)
                .order_by(failed_operations.c.last_failed_at.desc())
                .limit(limit)
            )
            total = await session.scalar(
                select(func.count()).select_from(failed_operations).where(condition)
            )
        return [_operation(r) for r in rows], int(total or 0)

    async def select(self, ids: Sequence[str]) -> list[FailedOperation]:
        query = select(failed_operations).order_by(failed_operations.c.first_failed_at)
        if ids:
            valid = [i for i in ids if _is_uuid(i)]
            query = query.where(failed_operations.c.id.in_(valid))
        else:
            query = query.where(failed_operations.c.permanent.is_(False))
        async with self._sessions() as session:
            return [_operation(r) for r in await session.execute(query)]

    async def resolve(self, operation_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(failed_operations).where(failed_operations.c.id == operation_id)
            )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class SqlSegmentMap:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def platform_segment(self, segment_id: str) -> str | None:
        async with self._sessions() as session:
            value = await session.scalar(
                select(segments.c.platform_segment_id).where(segments.c.segment_id == segment_id)
            )
        return str(value) if value is not None else None

    async def remember(self, segment_id: str, platform_segment_id: str) -> None:
        statement = insert(segments).values(
            segment_id=segment_id, platform_segment_id=platform_segment_id
        )
        statement = statement.on_conflict_do_update(
            index_elements=[segments.c.segment_id],
            set_={"platform_segment_id": statement.excluded.platform_segment_id},
        )
        async with self._sessions.begin() as session:
            await session.execute(statement)


class SqlInboundStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add(self, items: Sequence[tuple[str, str, dict[str, Any]]], now: datetime) -> int:
        if not items:
            return 0
        unique = {item_id: (kind, body) for item_id, kind, body in items}
        rows = [
            {"id": item_id, "kind": kind, "body": body, "attempts": 0, "received_at": now,
             "next_attempt_at": now}
            for item_id, (kind, body) in unique.items()
        ]
        statement = (
            insert(inbound_items).values(rows).on_conflict_do_nothing().returning(
                inbound_items.c.id
            )
        )
        async with self._sessions.begin() as session:
            stored = (await session.execute(statement)).all()
        return len(stored)

    async def due(self, now: datetime, limit: int) -> list[InboundItem]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(inbound_items)
                .where(
                    and_(inbound_items.c.delivered_at.is_(None),
                         inbound_items.c.next_attempt_at <= now)
                )
                .order_by(inbound_items.c.received_at, inbound_items.c.id)
                .limit(limit)
            )
            return [InboundItem(r.id, r.kind, r.body, r.attempts) for r in rows]

    async def delivered(self, ids: Sequence[str], now: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(inbound_items).where(inbound_items.c.id.in_(list(ids)))
                .values(delivered_at=now)
            )
            await session.execute(
                delete(inbound_items).where(
                    inbound_items.c.delivered_at < now - DELIVERED_RETENTION
                )
            )

    async def postpone(self, ids: Sequence[str], until: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(inbound_items)
                .where(inbound_items.c.id.in_(list(ids)))
                .values(attempts=inbound_items.c.attempts + 1, next_attempt_at=until)
            )

    async def pending(self) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(inbound_items)
                .where(inbound_items.c.delivered_at.is_(None))
            )
        return int(count or 0)

    async def cursor(self, name: str) -> str | None:
        async with self._sessions() as session:
            value = await session.scalar(select(cursors.c.value).where(cursors.c.name == name))
        return str(value) if value is not None else None

    async def set_cursor(self, name: str, value: str) -> None:
        statement = insert(cursors).values(name=name, value=value)
        statement = statement.on_conflict_do_update(
            index_elements=[cursors.c.name], set_={"value": statement.excluded.value}
        )
        async with self._sessions.begin() as session:
            await session.execute(statement)


class SqlProcessedEvents:
    """Routed events applied, in the cdp_bus inbox (`processed_messages`) of this schema."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, consumer: str) -> None:
        self._sessions = sessions
        self._consumer = consumer
        self._inbox = Inbox(SCHEMA)

    async def seen(self, event_id: str) -> bool:
        table = self._inbox.table
        async with self._sessions() as session:
            found = await session.scalar(
                select(table.c.message_id).where(
                    table.c.consumer == self._consumer, table.c.message_id == event_id
                )
            )
        return found is not None

    async def remember(self, event_id: str) -> None:
        async with self._sessions.begin() as session:
            await self._inbox.claim_message(session, self._consumer, event_id)
