"""PostgreSQL from the pgserver wheel."""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from cdp_db.engine import to_asyncpg_dsn

logger = logging.getLogger(__name__)

_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir`, reached through a unix socket.

    Several processes may open the same `data_dir`: pgserver counts them and stops the
    server when the last one exits (or when `stop` is called by the last holder).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Starts (or joins) the server; returns a `postgresql://` URL for database postgres."""
        with warnings.catch_warnings():
            # pgserver keeps its lock under the user runtime folder; where XDG_RUNTIME_DIR
            # is unset (containers, CI) platformdirs falls back to /tmp and warns on every
            # start. The fallback is fine for a lock file.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver logs every command it runs at INFO; that is its business, not ours.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        _forget_dead_holders(self.data_dir)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        url: str = self._server.get_uri()
        return url

    def url(self, database: str = "postgres") -> str:
        if self._server is None:
            raise RuntimeError("EmbeddedPostgres.start() first")
        url: str = self._server.get_uri(database)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _forget_dead_holders(data_dir: Path) -> None:
    """Drops processes that died without letting go from pgserver's list of holders.

    pgserver stops the server when its last holder exits, counting holders in a pid list in
    the data folder. A holder killed outright never removes itself, and then the server is
    never stopped again; a dead pid cannot hold anything, so it is safe to drop.
    """
    from pgserver.postgres_server import PostgresServer

    holders = data_dir / ".handle_pids.json"
    with PostgresServer._lock:
        if not holders.exists():
            return
        try:
            pids = [int(pid) for pid in json.loads(holders.read_text())]
        except (ValueError, TypeError):
            pids = []
        alive = [pid for pid in pids if _is_alive(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def with_database(url: str, database: str) -> str:
    """`url` pointing at `database` instead of the one it names."""
    parts = urlsplit(url)
    return parts._replace(path=f"/{database}").geturl()


async def create_database(admin_url: str, name: str, *, exist_ok: bool = True) -> str:
    """Creates database `name` on the server of `admin_url`; returns a URL for it."""
    if not _DATABASE_NAME.match(name):
        raise ValueError(f"database name {name!r} must match {_DATABASE_NAME.pattern}")
    dsn, kwargs = to_asyncpg_dsn(admin_url)
    connection = await asyncpg.connect(dsn, **kwargs)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and not exist_ok:
            raise ValueError(f"database {name!r} already exists")
        if not exists:
            # Identifiers cannot be bound as parameters; `name` was checked above.
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return with_database(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    if not _DATABASE_NAME.match(name):
        raise ValueError(f"database name {name!r} must match {_DATABASE_NAME.pattern}")
    dsn, kwargs = to_asyncpg_dsn(admin_url)
    connection = await asyncpg.connect(dsn, **kwargs)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
