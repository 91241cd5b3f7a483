"""Process lifecycle shared by every service's `main`.

`main()` loads settings (exiting with a message naming each bad variable: `exit_on`,
`load_settings_or_exit`), calls `tune_garbage_collection()` once start-up work is done, then
`run_main(serve(settings))`. Inside `serve`, resources go on
one `AsyncExitStack` (`cdp_service.hosting`) in the order telemetry, database, NATS,
background workers, gRPC server, so that on SIGTERM they close in reverse: health
NOT_SERVING and `server.stop(grace)` first, then workers, NATS drain, engine dispose and
finally the tracer flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
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


# Collect the young generation every 50,000 container allocations instead of 700, and the
# middle one every 20 young collections instead of 10.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collection(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Keeps the cyclic garbage collector from costing more than the work it runs beside.

    A service handling a batch allocates tens of thousands of small objects (decoded
    messages, rows, keys, results) that die together a few milliseconds later without
    forming cycles, so reference counting frees them. With the default thresholds the
    collector ran every 700 allocations, rescanned everything the batch still held and, every
    few batches, the whole imported heap (gRPC, protobuf, SQLAlchemy, OpenTelemetry): a fifth
    to a third of a service's CPU under load. The heap built at start-up lives as long as the
    process, so it is frozen out of the collector's sight, and collections are made rarer.
    Call it from `main` once settings and configuration are loaded.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


# How long a service may take to shut down after the stop signal before it exits anyway.
# Longer than any grace period: reaching it means shutdown is stuck on a peer that went
# away with its parent (a database or broker killed with `cdp up`), and a stuck process
# would otherwise linger forever, orphaned.
SHUTDOWN_DEADLINE_SECONDS = 60.0
# Exit code of a shutdown cut short (EX_SOFTWARE).
STUCK_SHUTDOWN_EXIT_CODE = 70


def stop_on_signals(*, deadline: float = SHUTDOWN_DEADLINE_SECONDS) -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (the running loop's handlers).

    The first signal also arms a deadline: a process still running `deadline` seconds later
    logs the tasks it is stuck in and exits with code 70.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            _exit_after(deadline, loop)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    return stop


def _exit_after(seconds: float, loop: asyncio.AbstractEventLoop) -> None:
    def log_stuck_tasks() -> None:
        for task in asyncio.all_tasks(loop):
            logger.error("still running at the shutdown deadline: %s in %s",
                         task.get_name(), " > ".join(_awaiting(task.get_coro())))

    def expire() -> None:
        logger.error("shutdown did not finish within %.0f s of the stop signal; exiting", seconds)
        with contextlib.suppress(RuntimeError):  # the loop may be closing after all
            asyncio.run_coroutine_threadsafe(_call(log_stuck_tasks), loop).result(timeout=2)
        logging.shutdown()
        os._exit(STUCK_SHUTDOWN_EXIT_CODE)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True  # a clean shutdown ends the process without waiting for it
    timer.start()


def _awaiting(coroutine: Any) -> list[str]:
    """Where a suspended coroutine waits: its chain of awaits, outermost first."""
    chain: list[str] = []
    while coroutine is not None and len(chain) < 12:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is None:
            break
        chain.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
    return chain


async def _call(function: Any) -> None:
    function()


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
