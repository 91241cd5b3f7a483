"""The async engine (SQLAlchemy 2 + asyncpg) and direct asyncpg access for hot paths."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from cdp_errors import Unavailable
from cdp_settings import setting


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "DATABASE_URL",
        doc="PostgreSQL URL, e.g. postgresql://user:pass@host:5432/cdp",
    )
    pool_size: int = setting("CDP_DB_POOL_SIZE", default=10, doc="connections kept open")
    max_overflow: int = setting("CDP_DB_MAX_OVERFLOW", default=10)
    statement_timeout_ms: int = setting(
        "CDP_DB_STATEMENT_TIMEOUT_MS", default=30000, doc="server-side limit per statement"
    )


def sqlalchemy_url(url: str) -> str:
    """`url` with the asyncpg driver, whatever PostgreSQL scheme it was given with."""
    return re.sub(r"^(postgres|postgresql)(\+\w+)?://", "postgresql+asyncpg://", url)


def create_database_engine(
    settings: DatabaseSettings, *, application_name: str = "cdp"
) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(settings.url),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {
                "application_name": application_name,
                "statement_timeout": str(settings.statement_timeout_ms),
            }
        },
    )


class Database:
    """One engine and session factory per process; sessions and connections per unit of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def ping(self) -> None:
        """Raises Unavailable when the database cannot run a query."""
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OSError, asyncpg.PostgresError, Exception) as error:
            raise Unavailable(f"database unreachable: {type(error).__name__}") from error

    @asynccontextmanager
    async def raw_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection for set-based hot paths (COPY, `= ANY($1)`)."""
        async with self.engine.connect() as connection:
            yield await driver_connection(connection)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def driver_connection(connection: AsyncConnection | AsyncSession) -> Any:
    """The asyncpg connection under a SQLAlchemy connection or session, same transaction."""
    if isinstance(connection, AsyncSession):
        connection = await connection.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection
