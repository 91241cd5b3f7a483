"""The event store (which is also the router's outbox), failed events, bus tables."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from cdp_bus.migrations import create_bus_tables, drop_bus_tables

revision = "0001"
down_revision = None

SCHEMA = "event_router"


def upgrade() -> None:
    op.create_table(
        "events",
        # Acceptance order: the relay publishes in it, which keeps each customer's events in
        # order on every subject.
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("customer_id", UUID(as_uuid=False), nullable=True),
        # The customer the event was resolved to when it arrived; merges re-point
        # customer_id, unmerges restore it from here.
        sa.Column("resolved_customer_id", UUID(as_uuid=False), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("properties", JSONB, nullable=False),
        sa.Column("targets", ARRAY(sa.Text), nullable=False),
        sa.Column("lane", sa.SmallInteger, nullable=False),
        # The unified event as published (protobuf), so the relay re-encodes nothing.
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("trace_headers", JSONB, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index("events_customer_idx", "events", ["customer_id", "occurred_at"],
                    schema=SCHEMA)
    op.create_index("events_type_idx", "events", ["type", "occurred_at"], schema=SCHEMA)
    op.create_index("events_unpublished_idx", "events", ["lane", "seq"], schema=SCHEMA,
                    postgresql_where=sa.text("published_at IS NULL"))
    op.create_table(
        "failed_events",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("raw_json", sa.Text, nullable=False),
        sa.Column("violations", JSONB, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    create_bus_tables(op, SCHEMA)


def downgrade() -> None:
    drop_bus_tables(op, SCHEMA)
    op.drop_table("failed_events", schema=SCHEMA)
    op.drop_table("events", schema=SCHEMA)
