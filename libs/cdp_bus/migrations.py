"""Tables every service that publishes or consumes needs, for its first Alembic revision."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


def create_bus_tables(op: Any, schema: str) -> None:
    """Creates `<schema>.outbox` and `<schema>.processed_messages`."""
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("headers", JSONB, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=schema,
    )
    create_inbox_table(op, schema)


def create_inbox_table(op: Any, schema: str) -> None:
    """Creates `<schema>.processed_messages`, for a service that consumes but never publishes."""
    op.create_table(
        "processed_messages",
        sa.Column("consumer", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column(
            "processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
        schema=schema,
    )


def drop_bus_tables(op: Any, schema: str) -> None:
    op.drop_table("processed_messages", schema=schema)
    op.drop_table("outbox", schema=schema)
