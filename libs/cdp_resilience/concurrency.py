"""Bounding how much runs at once: per key (an account's connection limit) and per gather."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slots:
    """A counting semaphore whose waiters for a retry go before first attempts.

    A released slot is handed straight to the next waiter (retries first, each queue in
    arrival order), so a newcomer never overtakes a waiter.
    """

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._retries: collections.deque[asyncio.Future[None]] = collections.deque()
        self._firsts: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, *, retry: bool) -> None:
        if self._free > 0 and not self._retries and not self._firsts:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._retries if retry else self._firsts).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot in the same turn as the cancellation
            raise

    @property
    def waiting(self) -> int:
        return sum(not w.done() for queue in (self._retries, self._firsts) for w in queue)

    def release(self) -> None:
        for queue in (self._retries, self._firsts):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1


class KeyedLimiter:
    """At most `limit` holders per key at once, e.g. a platform's simultaneous-connection cap.

    A holder retrying a failed call (`retry=True`) waits ahead of first attempts: a 429 or a
    5xx should cost its caller one backoff, not a place at the back of a long queue while
    the rest of its batch is done. Belongs to one event loop.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self._slots: dict[str, _Slots] = {}
        self._in_flight: dict[str, int] = {}
        self.peak_in_flight: dict[str, int] = {}

    def _slots_of(self, key: str) -> _Slots:
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _Slots(self.limit)
        return slots

    def in_flight(self, key: str) -> int:
        return self._in_flight.get(key, 0)

    def waiting(self, key: str) -> int:
        """How many are queued for one of `key`'s slots."""
        slots = self._slots.get(key)
        return slots.waiting if slots is not None else 0

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, retry: bool = False) -> AsyncIterator[None]:
        """Waits for one of `key`'s slots and holds it for the block."""
        slots = self._slots_of(key)
        await slots.acquire(retry=retry)
        count = self._in_flight.get(key, 0) + 1
        self._in_flight[key] = count
        self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), count)
        try:
            yield
        finally:
            self._in_flight[key] -= 1
            slots.release()


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
