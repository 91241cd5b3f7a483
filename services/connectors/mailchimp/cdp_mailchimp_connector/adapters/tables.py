"""The mailchimp_connector schema's tables, as SQLAlchemy Core (migrations create them)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

SCHEMA = "mailchimp_connector"

metadata = MetaData(schema=SCHEMA)

failed_operations = Table(
    "failed_operations",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("operation", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    # What was attempted, enough to run it again (member bodies carry the email: this table
    # is the connector's own, like the platform it mirrors).
    Column("payload", JSONB, nullable=False),
    Column("error", Text, nullable=False),
    Column("permanent", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("operation", "subject_id", name="failed_operations_subject_key"),
)

inbound_items = Table(
    "inbound_items",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("body", JSONB, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
)

segments = Table(
    "segments",
    metadata,
    Column("segment_id", Text, primary_key=True),
    Column("platform_segment_id", Text, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
