"""The async engine (SQLAlchemy 2 + asyncpg) and direct asyncpg access for hot paths."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


def to_asyncpg_dsn(url: str) -> tuple[str, dict[str, Any]]:
    """A DSN and keyword arguments asyncpg accepts, from any PostgreSQL URL the suite takes.

    Strips SQLAlchemy's `+asyncpg` driver marker; a `host=` query parameter naming a socket
    folder (pgserver's URLs) is passed as asyncpg's `host` argument.
    """
    cleaned = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    cleaned = cleaned.replace("postgres://", "postgresql://", 1)
    parts = urlsplit(cleaned)
    kwargs: dict[str, Any] = {}
    query = parse_qs(parts.query)
    if "host" in query:
        kwargs["host"] = query["host"][0]
    return cleaned, kwargs


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
    """One engine and session factory per process; sessions and connections per unit of work.

    `pool` is a plain asyncpg pool beside the engine, for read-only hot paths where one round
    trip matters (SQLAlchemy's checkout adds a ping and bookkeeping); open it with
    `open_pool` at start.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._pool: asyncpg.Pool | None = None

    async def open_pool(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        dsn, kwargs = to_asyncpg_dsn(url)
        self._pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, **kwargs)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Database.open_pool() first")
        return self._pool

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
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self.engine.dispose()


async def driver_connection(connection: AsyncConnection | AsyncSession) -> Any:
    """The asyncpg connection under a SQLAlchemy connection or session, in its transaction.

    SQLAlchemy's asyncpg adapter opens the database transaction lazily, on the first
    statement *it* runs; statements sent straight to asyncpg would run before that, each in
    its own implicit transaction. So the adapter's transaction is started here first, and
    the session's commit or rollback then covers asyncpg's statements too.
    """
    if isinstance(connection, AsyncSession):
        connection = await connection.connection()
    raw = await connection.get_raw_connection()
    adapted = raw.dbapi_connection
    if adapted is None:
        raise Unavailable("database connection was invalidated")
    if getattr(adapted, "_transaction", None) is None and connection.in_transaction():
        # The adapter keeps no public way to begin; this is the call its own execute makes.
        await adapted._start_transaction()
    return raw.driver_connection
