"""Outbox and processed-messages tables, and a table of notes, for the host tests."""

from alembic import op

from cdp_bus.migrations import create_bus_tables, drop_bus_tables

revision = "0001"
down_revision = None

SCHEMA = "hosttest"


def upgrade() -> None:
    create_bus_tables(op, SCHEMA)
    op.execute(f"CREATE TABLE {SCHEMA}.notes (id text PRIMARY KEY)")


def downgrade() -> None:
    op.execute(f"DROP TABLE {SCHEMA}.notes")
    drop_bus_tables(op, SCHEMA)
