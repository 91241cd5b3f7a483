"""Process lifecycle shared by every service's `main`.

`main()` loads settings (exiting with a message naming each bad variable: `exit_on`,
`load_settings_or_exit`), then `run_main(serve(settings))`. Inside `serve`, resources go on
one `AsyncExitStack` (`cdp_service.hosting`) in the order telemetry, database, NATS,
background workers, gRPC server, so that on SIGTERM they close in reverse: health
NOT_SERVING and `server.stop(grace)` first, then workers, NATS drain, engine dispose and
finally the tracer flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from cdp_settings import SettingsError, load_settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


@contextlib.contextmanager
def exit_on(*errors: type[Exception], heading: str = "") -> Iterator[None]:
    """For `main`'s start-up checks: an error of `errors` raised in the block is printed
    (under `heading`) to stderr and the process exits with 2, before anything starts."""
    try:
        yield
    except errors as error:
        print(f"error: {heading}\n{error}" if heading else f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def load_settings_or_exit(cls: type[T]) -> T:
    """Settings from the environment; on any problem prints them all and exits with 2."""
    with exit_on(SettingsError):
        settings = load_settings(cls)
    return settings


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the running loop's handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.asynccontextmanager
async def background(
    coro: Coroutine[Any, Any, None], *, name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """Runs `coro` as a task for the duration of the block, then cancels and awaits it.

    A task that dies on its own is logged at once rather than discovered at shutdown.
    """
    task = asyncio.create_task(coro, name=name)

    def report(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            logger.error("background task %s failed", name, exc_info=done.exception())

    task.add_done_callback(report)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def run_main(coro: Coroutine[Any, Any, None]) -> None:
    """Runs a service's `serve` coroutine to completion and exits 0 on a clean stop."""
    try:
        import uvloop
    except ImportError:  # uvloop is an optimisation, not a requirement
        asyncio.run(coro)
        return
    uvloop.run(coro)
