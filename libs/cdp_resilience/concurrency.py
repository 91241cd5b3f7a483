"""Bounding how much runs at once: per key (an account's connection limit) and per gather."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class KeyedLimiter:
    """At most `limit` holders per key at once, e.g. a platform's simultaneous-connection cap.

    One `asyncio.Semaphore` per key, created on first use. Belongs to one event loop.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._in_flight: dict[str, int] = {}
        self.peak_in_flight: dict[str, int] = {}

    def _semaphore(self, key: str) -> asyncio.Semaphore:
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = asyncio.Semaphore(self.limit)
        return semaphore

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Waits for one of `key`'s slots and holds it for the block."""
        async with self._semaphore(key):
            count = self._in_flight.get(key, 0) + 1
            self._in_flight[key] = count
            self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), count)
            try:
                yield
            finally:
                self._in_flight[key] -= 1


async def bounded_gather(
    items: Iterable[T], worker: Callable[[T], Awaitable[R]], *, limit: int
) -> list[R]:
    """`worker(item)` for every item with at most `limit` running at once; results in order.

    The first error cancels the workers still running and is raised in an ExceptionGroup,
    as `asyncio.TaskGroup` does; make `worker` return failures as values when every item
    must be attempted.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    pending = list(items)
    results: list[R | None] = [None] * len(pending)
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < len(pending):
            index = next_index
            next_index += 1
            results[index] = await worker(pending[index])

    async with asyncio.TaskGroup() as group:
        for _ in range(min(limit, len(pending))):
            group.create_task(lane())
    return results  # type: ignore[return-value]
