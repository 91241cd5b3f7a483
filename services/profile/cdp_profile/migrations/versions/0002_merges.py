"""The merges this service has applied or seen undone, by the identity service's merge id."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"

SCHEMA = "profile"


def upgrade() -> None:
    op.create_table(
        "merges",
        sa.Column("merge_id", sa.Text, primary_key=True),
        sa.Column("survivor_id", UUID(as_uuid=False), nullable=False),
        sa.Column("merged_id", UUID(as_uuid=False), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unmerged_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("merges", schema=SCHEMA)
