"""The transactional outbox: publish exactly what was committed, even across crashes.

A producer writes each message into its own schema's `outbox` table in the same database
transaction as the state change it announces (`UnitOfWork.publish`). `OutboxRelay` reads the
table in order, publishes to JetStream with `Nats-Msg-Id` = message id, waits for the acks
and only then deletes the rows. A crash between ack and delete re-sends those messages on
restart; JetStream's duplicate window drops them, and consumers are idempotent by id anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from nats.js import JetStreamContext
from opentelemetry import trace
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from cdp_bus.envelope import PROTOBUF, CloudEvent
from cdp_bus.tracing import TraceParents, current_trace_headers, producer_span
from cdp_db import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxMessage:
    """One message waiting to be published: its subject and CloudEvent."""

    subject: str
    event: CloudEvent
    # Trace context of the work that produced the message, captured when it was queued.
    trace_headers: dict[str, str] = field(default_factory=current_trace_headers)

    @classmethod
    def of_proto(
        cls,
        subject: str,
        body: Message,
        *,
        source: str,
        event_type: str | None = None,
        message_id: str | None = None,
        about: str = "",
        time: datetime | None = None,
    ) -> OutboxMessage:
        """A message whose body is a protobuf message; the type defaults to the subject."""
        event = CloudEvent(
            id=message_id or str(uuid.uuid4()),
            type=event_type or subject,
            source=source,
            data=body.SerializeToString(),
            time=time or datetime.now(UTC),
            content_type=PROTOBUF,
            data_schema=body.DESCRIPTOR.full_name,
            subject=about,
        )
        return cls(subject=subject, event=event)


def outbox_table(schema: str, metadata: MetaData | None = None) -> Table:
    """The `outbox` table of a service's schema (created by its first migration)."""
    return Table(
        "outbox",
        metadata or MetaData(),
        Column("seq", BigInteger, Identity(always=True), primary_key=True),
        Column("message_id", Text, nullable=False),
        Column("subject", Text, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )


class SqlOutbox:
    """Writes messages into the outbox inside the caller's transaction (a MessageWriter)."""

    def __init__(self, schema: str) -> None:
        self.table = outbox_table(schema)
        self._committed = asyncio.Event()

    async def write(self, session: AsyncSession, messages: Sequence[OutboxMessage]) -> None:
        rows: list[dict[str, Any]] = []
        for message in messages:
            headers = message.event.headers()
            headers.update(message.trace_headers)
            rows.append(
                {
                    "message_id": message.event.id,
                    "subject": message.subject,
                    "headers": headers,
                    "body": message.event.data,
                }
            )
        await session.execute(insert(self.table), rows)

    def notify_committed(self) -> None:
        """Wakes the relay in this process: new rows are committed."""
        self._committed.set()

    async def wait_for_commit(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._committed.wait(), timeout)
        except TimeoutError:
            pass
        self._committed.clear()


class OutboxRelay:
    """Moves committed outbox rows to JetStream, in order, deleting them once acknowledged.

    Replicas may run a relay each: rows are claimed with `FOR UPDATE SKIP LOCKED`.

    Args:
        poll_interval: how often to look for rows written by other processes; rows written
            by this process wake the relay at once.
    """

    def __init__(
        self,
        database: Database,
        outbox: SqlOutbox,
        js: JetStreamContext,
        *,
        tracer: trace.Tracer,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        ack_timeout: float = 5.0,
    ) -> None:
        self._database = database
        self._outbox = outbox
        self._js = js
        self._tracer = tracer
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._ack_timeout = ack_timeout
        self.published_total = 0

    async def run(self) -> None:
        """Relays until cancelled; on cancellation finishes nothing half-way (rows stay)."""
        while True:
            try:
                moved = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS or the database is down: keep rows, retry
                logger.warning("outbox relay could not publish, will retry: %s", error)
                moved = 0
                await asyncio.sleep(self._poll_interval)
            if moved < self._batch_size:
                await self._outbox.wait_for_commit(self._poll_interval)

    async def flush(self, *, timeout: float = 5.0) -> None:
        """Publishes whatever is committed, for a clean shutdown; gives up after `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while await self.relay_once() > 0:
                    pass
        except Exception as error:  # rows stay in the outbox and go out at next start
            logger.warning("outbox not flushed at shutdown, rows kept for next start: %s", error)

    async def relay_once(self) -> int:
        """Publishes one batch; returns how many rows were published and deleted."""
        table = self._outbox.table
        async with self._database.sessions() as session, session.begin():
            rows = (
                await session.execute(
                    select(
                        table.c.seq,
                        table.c.message_id,
                        table.c.subject,
                        table.c.headers,
                        table.c.body,
                    )
                    .order_by(table.c.seq)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            acknowledged = await self._publish(rows)
            if acknowledged:
                await session.execute(delete(table).where(table.c.seq.in_(acknowledged)))
        self.published_total += len(acknowledged)
        return len(acknowledged)

    async def _publish(self, rows: Sequence[Any]) -> list[int]:
        # publish_async pipelines the batch over one connection, so the stream receives the
        # messages in outbox order, and the acks are awaited together.
        pending: list[tuple[int, asyncio.Future[Any]]] = []
        parents = TraceParents()
        for row in rows:
            headers = dict(
                row.headers if isinstance(row.headers, dict) else json.loads(row.headers)
            )
            with producer_span(
                self._tracer,
                row.subject,
                headers,
                message_id=row.message_id,
                parent=parents.of(headers),
            ):
                future = await self._js.publish_async(row.subject, bytes(row.body), headers=headers)
            pending.append((row.seq, future))
        return await acknowledged_seqs(pending, timeout=self._ack_timeout)


async def acknowledged_seqs(
    pending: Sequence[tuple[int, asyncio.Future[Any]]], *, timeout: float
) -> list[int]:
    """The seqs whose publish JetStream acknowledged within `timeout`, in `pending` order.

    The acks were requested together, so they share one deadline: one wait costs a timer and
    a wake-up for the batch, where a `wait_for` per ack cost a task and a timer each. Acks
    still pending at the deadline are cancelled, as `wait_for` cancels them.
    """
    futures = [future for _, future in pending]
    if not futures:
        return []
    try:
        _, late = await asyncio.wait(futures, timeout=timeout)
    except asyncio.CancelledError:
        for future in futures:
            future.cancel()
        raise
    acknowledged: list[int] = []
    for seq, future in pending:
        if future in late:
            future.cancel()
            logger.warning("publish of outbox row %s not acknowledged within %ss", seq, timeout)
        elif future.cancelled():
            logger.warning("publish of outbox row %s not acknowledged: cancelled", seq)
        elif (error := future.exception()) is not None:
            logger.warning("publish of outbox row %s not acknowledged: %s", seq, error)
        else:
            acknowledged.append(seq)
    return acknowledged
