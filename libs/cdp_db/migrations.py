"""Applying a service's Alembic migrations at start.

A service keeps its revisions in `<package>/migrations/versions/`. `apply_migrations` runs
them to head inside the service's own schema (the version table lives there too), holding a
PostgreSQL advisory lock so that replicas starting at the same moment migrate once.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine


def _lock_key(schema: str) -> int:
    return zlib.crc32(f"cdp-migrations:{schema}".encode())


def _upgrade_to_head(connection: Connection, migrations_dir: Path, schema: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    script = ScriptDirectory.from_config(config)

    def upgrade(revision: Any, _context: Any) -> Any:
        return script._upgrade_revs("head", revision)

    with EnvironmentContext(config, script, fn=upgrade) as environment:
        environment.configure(
            connection=connection,
            version_table_schema=schema,
            transaction_per_migration=False,
        )
        with environment.begin_transaction():
            environment.run_migrations()


async def apply_migrations(engine: AsyncEngine, *, schema: str, migrations_dir: Path) -> None:
    """Creates `schema` if needed and upgrades it to the newest revision."""
    if not (migrations_dir / "versions").is_dir():
        raise FileNotFoundError(f"no Alembic versions folder under {migrations_dir}")
    async with engine.connect() as connection:
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _lock_key(schema)})
        try:
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await connection.commit()
            await connection.run_sync(_upgrade_to_head, migrations_dir, schema)
            await connection.commit()
        finally:
            await connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(schema)}
            )
            await connection.commit()
