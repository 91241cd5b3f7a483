"""The profile schema's tables, as SQLAlchemy Core (migrations create them).

- `profiles`: one row per customer the service has heard of: the unified document, its
  version, and markers for merged (`merged_into`) and erased (`forgotten_at`) customers.
- `fragments`: the append-only history. `customer_id` is who holds the fragment now (a
  merge moves it), `ingested_for` who it was sent for (never changes; an unmerge uses it).
- `field_states`: per (customer, field): the winning value with its provenance and what the
  field's strategy needs to decide the next observation without reading history.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

SCHEMA = "profile"
FRAGMENT_SEQUENCE = f"{SCHEMA}.fragment_seq"

metadata = MetaData(schema=SCHEMA)

profiles = Table(
    "profiles",
    metadata,
    Column("customer_id", UUID(as_uuid=False), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("attributes", JSONB, nullable=False),
    Column("merged_into", UUID(as_uuid=False), nullable=True),
    Column("forgotten_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

fragments = Table(
    "fragments",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("customer_id", UUID(as_uuid=False), ForeignKey(profiles.c.customer_id), nullable=False),
    Column("ingested_for", UUID(as_uuid=False), ForeignKey(profiles.c.customer_id), nullable=False),
    Column("source", Text, nullable=False),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("attributes", JSONB, nullable=False),
)

field_states = Table(
    "field_states",
    metadata,
    Column(
        "customer_id",
        UUID(as_uuid=False),
        ForeignKey(profiles.c.customer_id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("path", Text, nullable=False),
    Column("strategy", Text, nullable=False),
    Column("value", JSONB, nullable=False),
    Column("source", Text, nullable=False),
    Column("observed_at", DateTime(timezone=True), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("contributing_sources", ARRAY(Text), nullable=False),
    Column("reason", Text, nullable=False),
    Column("memory", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("customer_id", "path"),
)

# Merges by the identity service's merge id: an unmerge handled before its merge (two
# replicas, two deliveries) must leave the customers apart.
merges = Table(
    "merges",
    metadata,
    Column("merge_id", Text, primary_key=True),
    Column("survivor_id", UUID(as_uuid=False), nullable=False),
    Column("merged_id", UUID(as_uuid=False), nullable=False),
    Column("merged_at", DateTime(timezone=True), nullable=True),
    Column("unmerged_at", DateTime(timezone=True), nullable=True),
)
