"""The inbox of routed events applied (cdp_bus `processed_messages`)."""

from alembic import op

from cdp_bus.migrations import create_inbox_table

revision = "0002"
down_revision = "0001"

SCHEMA = "mailchimp_connector"


def upgrade() -> None:
    create_inbox_table(op, SCHEMA)


def downgrade() -> None:
    op.drop_table("processed_messages", schema=SCHEMA)
