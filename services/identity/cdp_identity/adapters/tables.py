"""The identity schema's tables, as SQLAlchemy Core (migrations create them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import UUID

SCHEMA = "identity"

metadata = MetaData(schema=SCHEMA)

customers = Table(
    "customers",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("status", Text, nullable=False),
    Column("merged_into", UUID(as_uuid=False), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

identities = Table(
    "identities",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("customer_id", UUID(as_uuid=False), ForeignKey(customers.c.id), nullable=False),
    Column("kind", Text, nullable=False),
    Column("platform", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("source_platform", Text, nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_verified_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "platform", "value", name="identities_identifier_key"),
)
