"""Shared pieces of the benchmarks: the suite in separate processes, timing and memory.

A benchmark brings up the services it measures from the packaged pexes (`./pants package ::`
first) on an embedded PostgreSQL and NATS, exactly as `cdp up` does, so each service runs in
its own process and its memory can be read. Figures are printed beside a floor measured in
the same run on the same machine (these machines are shared and noisy: ratios, not absolute
numbers, are what compare across runs).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from cdp_cli.runtime import Suite, UpOptions
from cdp_embedded.nats import free_port

DIST = Path(os.environ.get("CDP_BIN_DIR", "dist/cdp"))


@contextlib.asynccontextmanager
async def suite_running(
    services: Sequence[str],
    *,
    data_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Suite]:
    """The named services (and embedded PostgreSQL and NATS) running as `cdp up` runs them.

    Ports are free ones, so a benchmark never collides with a `cdp up` already running.
    """
    holder = tempfile.TemporaryDirectory(prefix="cdp-bench-") if data_dir is None else None
    folder = Path(holder.name) if holder else data_dir
    assert folder is not None
    env = dict(extra_env or {})
    for name in services:
        env.setdefault(f"CDP_{name.upper()}_PORT", str(free_port()))
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    options = UpOptions(
        data_dir=folder, bin_dir=DIST, database_url=None, nats_url=None, nats_port=free_port(),
        only=tuple(services),
    )
    suite = Suite(options)
    try:
        await suite.start()
        yield suite
    finally:
        await suite.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if holder:
            holder.cleanup()


@dataclass
class MemorySampler:
    """Samples the resident memory of processes (and their children) every `interval` s."""

    pids: dict[str, int]
    interval: float = 0.1
    # Local sandboxes standing in for external platforms keep the platform's whole data set in
    # memory (every member of an audience): reported, but not held to the services' limits.
    stand_ins: frozenset[str] = frozenset()
    peaks: dict[str, int] = field(default_factory=dict)
    idle: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @staticmethod
    def rss(pid: int) -> int:
        try:
            process = psutil.Process(pid)
            total = process.memory_info().rss
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            return int(total)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0), self.rss(pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self.idle = {name: self.rss(pid) for name, pid in self.pids.items()}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def report(self) -> str:
        lines = ["service memory (RSS): idle -> peak under load (limits: idle 150 MB, load 300 MB)"]
        for name in self.pids:
            idle, peak = self.idle.get(name, 0) / 2**20, self.peaks.get(name, 0) / 2**20
            if name in self.stand_ins:
                verdict = "stand-in for the platform, holds its data; no limit"
            else:
                verdict = "ok" if idle < 150 and peak < 300 else "OVER"
            lines.append(f"  {name:<22} {idle:7.1f} MB -> {peak:7.1f} MB  {verdict}")
        return "\n".join(lines)


def service_pids(suite: Suite) -> dict[str, int]:
    return {service.spec.name: service.process.pid for service in suite.services}


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0.5 = median, 0.99 = p99) of `samples`."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summarize_latencies(samples_ms: Sequence[float]) -> str:
    return (
        f"p50 {percentile(samples_ms, 0.5):.2f} ms, p99 {percentile(samples_ms, 0.99):.2f} ms, "
        f"mean {statistics.fmean(samples_ms):.2f} ms over {len(samples_ms)} calls"
    )


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a list that holds the elapsed seconds once the block ends."""
    elapsed: list[float] = []
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.append(time.perf_counter() - start)


def ratio_line(
    name: str, measured: float, floor: float, unit: str, goal: str, *, decimals: int = 0
) -> str:
    """`name: measured unit vs floor unit = share (goal)`; `decimals` for small figures (ms)."""
    share = measured / floor if floor else float("nan")
    return (
        f"{name}: {measured:,.{decimals}f} {unit} vs floor {floor:,.{decimals}f} {unit} "
        f"= {share:.1%} ({goal})"
    )
