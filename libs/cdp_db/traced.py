"""asyncpg with SQL spans, for the hot paths that bypass SQLAlchemy.

The SQLAlchemy engine tracer only sees statements SQLAlchemy runs; code that talks to
asyncpg directly (set-based lookups, COPY) wraps its connection here so its SQL shows in the
same trace. Spans carry the statement text with its placeholders, never the parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode


def _operation(sql: str) -> str:
    words = sql.lstrip().split(None, 1)
    return words[0].upper() if words else "SQL"


class TracedConnection:
    """The asyncpg connection API the suite uses, each call in a CLIENT span."""

    def __init__(self, connection: Any, tracer: trace.Tracer) -> None:
        self.raw = connection
        self._tracer = tracer

    @contextmanager
    def _span(self, sql: str) -> Iterator[None]:
        with self._tracer.start_as_current_span(
            _operation(sql),
            kind=SpanKind.CLIENT,
            attributes={"db.system": "postgresql", "db.statement": sql.strip()},
        ) as span:
            try:
                yield
            except Exception as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        with self._span(sql):
            rows: list[Any] = await self.raw.fetch(sql, *args)
            return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        with self._span(sql):
            return await self.raw.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with self._span(sql):
            return await self.raw.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        with self._span(sql):
            status: str = await self.raw.execute(sql, *args)
            return status

    async def executemany(self, sql: str, args: Sequence[Sequence[Any]]) -> None:
        with self._span(sql):
            await self.raw.executemany(sql, args)
