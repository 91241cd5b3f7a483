"""Failed operations, inbound items (webhooks and activity awaiting delivery), segment map,
pull cursors."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None

SCHEMA = "mailchimp_connector"


def upgrade() -> None:
    op.create_table(
        "failed_operations",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("subject_id", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("permanent", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("operation", "subject_id", name="failed_operations_subject_key"),
        schema=SCHEMA,
    )
    op.create_table(
        "inbound_items",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("body", JSONB, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index(
        "inbound_items_due_idx",
        "inbound_items",
        ["next_attempt_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_table(
        "segments",
        sa.Column("segment_id", sa.Text, primary_key=True),
        sa.Column("platform_segment_id", sa.Text, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("cursors", "segments", "inbound_items", "failed_operations"):
        op.drop_table(table, schema=SCHEMA)
