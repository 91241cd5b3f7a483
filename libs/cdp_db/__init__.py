"""PostgreSQL access for the services: engine, unit of work and migrations.

Each service owns one schema (named after it) and its Alembic migrations, applied at start
under an advisory lock so that replicas starting together migrate once.
"""

from cdp_db.engine import Database, DatabaseSettings, create_database_engine, driver_connection
from cdp_db.migrations import apply_migrations
from cdp_db.traced import TracedConnection
from cdp_db.unit_of_work import MessageWriter, UnitOfWork

__all__ = [
    "Database",
    "DatabaseSettings",
    "MessageWriter",
    "TracedConnection",
    "UnitOfWork",
    "apply_migrations",
    "create_database_engine",
    "driver_connection",
]
