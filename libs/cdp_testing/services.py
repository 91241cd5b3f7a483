"""Running a service's `serve` coroutine inside a test, on port 0, until the test ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from cdp_grpc import GrpcServer

OnServing = Callable[[GrpcServer], Awaitable[None]]
StartService = Callable[[asyncio.Event, OnServing], Awaitable[None]]


@asynccontextmanager
async def service_running(
    start: StartService, *, timeout: float = 60.0
) -> AsyncIterator[GrpcServer]:
    """Starts `start(stop, on_serving)` as a task and yields its server once SERVING.

    On exit sets `stop` and waits for the service's own ordered shutdown. A service that fails
    to start raises its own error here instead of timing out.
    """
    stop = asyncio.Event()
    started: asyncio.Future[GrpcServer] = asyncio.get_running_loop().create_future()

    async def on_serving(server: GrpcServer) -> None:
        started.set_result(server)

    task = asyncio.ensure_future(start(stop, on_serving))
    either: list[asyncio.Future[Any]] = [task, started]
    await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
        raise RuntimeError("the service stopped before it was serving")
    if not started.done():
        task.cancel()
        raise TimeoutError(f"the service was not serving within {timeout} s")
    try:
        yield started.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
