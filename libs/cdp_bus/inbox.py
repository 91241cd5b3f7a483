"""Idempotent consumers: each message id is applied at most once per consumer.

A handler calls `claim_message` inside the same transaction as its effects. The insert
into `processed_messages` conflicts when the id was already applied, so a redelivered or
re-sent message changes nothing, and a crash before commit leaves the id unclaimed.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, PrimaryKeyConstraint, Table, Text, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession


def processed_messages_table(schema: str, metadata: MetaData | None = None) -> Table:
    return Table(
        "processed_messages",
        metadata or MetaData(),
        Column("consumer", Text, nullable=False),
        Column("message_id", Text, nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "message_id"),
        schema=schema,
    )


class Inbox:
    def __init__(self, schema: str) -> None:
        self.table = processed_messages_table(schema)

    async def claim_message(self, session: AsyncSession, consumer: str, message_id: str) -> bool:
        """True the first time `consumer` sees `message_id` (in this transaction's view)."""
        result = await session.execute(
            insert(self.table)
            .values(consumer=consumer, message_id=message_id)
            .on_conflict_do_nothing()
            .returning(self.table.c.message_id)
        )
        return result.first() is not None
