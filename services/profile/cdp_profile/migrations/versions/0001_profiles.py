"""Profiles, the fragment history, per-field states, outbox and inbox."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from cdp_bus.migrations import create_bus_tables, drop_bus_tables

revision = "0001"
down_revision = None

SCHEMA = "profile"


def upgrade() -> None:
    op.execute(f"CREATE SEQUENCE {SCHEMA}.fragment_seq")
    op.create_table(
        "profiles",
        sa.Column("customer_id", UUID(as_uuid=False), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("attributes", JSONB, nullable=False),
        sa.Column("merged_into", UUID(as_uuid=False), nullable=True),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    # Who was merged into whom: followed to find survivors and merge families.
    op.create_index(
        "profiles_merged_into_idx",
        "profiles",
        ["merged_into"],
        schema=SCHEMA,
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )
    op.create_table(
        "fragments",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column(
            "customer_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.profiles.customer_id"),
            nullable=False,
        ),
        sa.Column(
            "ingested_for",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.profiles.customer_id"),
            nullable=False,
        ),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attributes", JSONB, nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "fragments_customer_seq_idx", "fragments", ["customer_id", "seq"], schema=SCHEMA
    )
    op.create_index("fragments_ingested_for_idx", "fragments", ["ingested_for"], schema=SCHEMA)
    op.create_table(
        "field_states",
        sa.Column(
            "customer_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.profiles.customer_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("value", JSONB, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("contributing_sources", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("memory", JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "path"),
        schema=SCHEMA,
    )
    create_bus_tables(op, SCHEMA)


def downgrade() -> None:
    drop_bus_tables(op, SCHEMA)
    op.drop_table("field_states", schema=SCHEMA)
    op.drop_table("fragments", schema=SCHEMA)
    op.drop_table("profiles", schema=SCHEMA)
    op.execute(f"DROP SEQUENCE {SCHEMA}.fragment_seq")
