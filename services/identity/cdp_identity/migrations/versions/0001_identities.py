"""Customers, their identities (unique per normalised identifier), outbox and inbox."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from cdp_bus.migrations import create_bus_tables, drop_bus_tables

revision = "0001"
down_revision = None

SCHEMA = "identity"


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("merged_into", UUID(as_uuid=False), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "identities",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column(
            "customer_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.customers.id"),
            nullable=False,
        ),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("source_platform", sa.Text, nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("kind", "platform", "value", name="identities_identifier_key"),
        schema=SCHEMA,
    )
    op.create_index("identities_customer_idx", "identities", ["customer_id"], schema=SCHEMA)
    create_bus_tables(op, SCHEMA)


def downgrade() -> None:
    drop_bus_tables(op, SCHEMA)
    op.drop_table("identities", schema=SCHEMA)
    op.drop_table("customers", schema=SCHEMA)
