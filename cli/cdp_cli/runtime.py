"""`cdp up`: PostgreSQL, NATS and every service, started, watched and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp_cli.services import SERVICES, ServiceSpec, port_of
from cdp_embedded import EmbeddedNats, EmbeddedPostgres, create_database
from cdp_embedded.nats import detach_but_die_with_parent

STATE_FILE = "state.json"
LOCK_FILE = ".lock"
EMBEDDED_DATABASE = "cdp"


@dataclass
class UpOptions:
    data_dir: Path
    bin_dir: Path
    database_url: str | None
    nats_url: str | None
    nats_port: int
    host: str = "127.0.0.1"
    start_timeout: float = 90.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # Start only these services (benchmarks); every available one when empty.
    only: tuple[str, ...] = ()


@dataclass
class RunningService:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    address: str
    log_path: Path


def redact_url(url: str) -> str:
    """A URL fit to print: any password replaced."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def lock_data_dir(data_dir: Path) -> TextIO:
    """Holds `data_dir` for this process; raises if another live `cdp up` holds it.

    An flock, not a pid file: it goes away with the process however it ends.
    """
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(
            f"the suite is already running from {data_dir}; stop that `cdp up` first "
            "or use another --data-dir"
        ) from None
    return handle


async def health_status(address: str, *, timeout: float = 2.0) -> str:
    """SERVING, NOT_SERVING, ... or UNREACHABLE."""
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
    except grpc.aio.AioRpcError:
        return "UNREACHABLE"


async def http_status(url: str, *, timeout: float = 2.0) -> str:
    """SERVING when a GET of `url` answers 200, else UNREACHABLE (for HTTP stand-ins)."""

    def probe() -> str:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                return "SERVING" if reply.status == 200 else f"HTTP {reply.status}"
        except (urllib.error.URLError, OSError):
            return "UNREACHABLE"

    return await asyncio.to_thread(probe)


async def service_status(spec: ServiceSpec | None, address: str, *, timeout: float = 2.0) -> str:
    if spec is not None and spec.health == "http":
        return await http_status(f"http://{address}{spec.health_path}", timeout=timeout)
    return await health_status(address, timeout=timeout)


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Suite:
    """Owns the embedded servers and the service processes of one `cdp up`."""

    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None
        self.services: list[RunningService] = []
        self.database_url = options.database_url or ""
        self.nats_url = options.nats_url or ""
        self._lock: TextIO | None = None

    def available_services(self) -> list[ServiceSpec]:
        environ = {**os.environ, **self.options.extra_env}
        return [
            spec for spec in SERVICES
            if (self.options.bin_dir / spec.binary).is_file()
            and (not self.options.only or spec.name in self.options.only)
            and not (spec.skip_if_env and environ.get(spec.skip_if_env))
        ]

    async def start(self) -> None:
        data_dir = self.options.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = lock_data_dir(data_dir)
        (data_dir / "logs").mkdir(exist_ok=True)
        specs = self.available_services()
        if not specs:
            raise RuntimeError(
                f"no service binaries in {self.options.bin_dir}; build them with ./pants package ::"
            )
        for spec in specs:
            if port_in_use(self.options.host, port_of(spec)):
                raise RuntimeError(
                    f"port {port_of(spec)} for {spec.name} is already in use; stop what holds "
                    f"it or move the service with CDP_{spec.name.upper()}_PORT"
                )
        if not self.database_url:
            self.postgres = EmbeddedPostgres(data_dir / "postgres")
            admin_url = await asyncio.to_thread(self.postgres.start)
            self.database_url = await create_database(admin_url, EMBEDDED_DATABASE)
        if not self.nats_url:
            self.nats = EmbeddedNats(
                data_dir / "nats", port=self.options.nats_port, host=self.options.host
            )
            # Started from this (the main) thread: its death signal follows the thread.
            self.nats_url = self.nats.start()
        exported = {
            name: value.format(address=f"{self.options.host}:{port_of(spec)}")
            for spec in specs
            for name, value in spec.exports
        }
        for spec in specs:
            self.services.append(self._launch(spec, exported))
        await self._wait_serving()
        self._write_state()

    def _launch(self, spec: ServiceSpec, exported: dict[str, str] | None = None) -> RunningService:
        log_path = self.options.data_dir / "logs" / f"{spec.name}.log"
        env = {
            # What other services export comes first: explicit settings win over it.
            **(exported or {}),
            **os.environ,
            **self.options.extra_env,
            "CDP_GRPC_HOST": self.options.host,
            "CDP_GRPC_PORT": str(port_of(spec)),
            spec.port_env: str(port_of(spec)),
            "CDP_LOG_FORMAT": os.environ.get("CDP_LOG_FORMAT", "json"),
        }
        if spec.needs_database:
            env["DATABASE_URL"] = self.database_url
        if spec.needs_nats:
            env["NATS_URL"] = self.nats_url
        for other in SERVICES:
            env.setdefault(
                f"CDP_{other.name.upper()}_ADDR", f"{self.options.host}:{port_of(other)}"
            )
        log = log_path.open("ab")
        process = subprocess.Popen(
            [str(self.options.bin_dir / spec.binary)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=detach_but_die_with_parent,
        )
        log.close()
        return RunningService(spec, process, f"{self.options.host}:{port_of(spec)}", log_path)

    async def relaunch(self, name: str) -> RunningService:
        """Starts service `name` again after its process died (a crash test killed it), with
        the same settings, and returns once it is SERVING."""
        index = next(i for i, s in enumerate(self.services) if s.spec.name == name)
        if self.services[index].process.poll() is None:
            raise RuntimeError(f"{name} is still running")
        exported = {
            key: value.format(address=f"{self.options.host}:{port_of(s.spec)}")
            for s in self.services
            for key, value in s.spec.exports
        }
        self.services[index] = self._launch(self.services[index].spec, exported)
        await self._wait_serving([self.services[index]])
        return self.services[index]

    async def _wait_serving(self, services: list[RunningService] | None = None) -> None:
        deadline = time.monotonic() + self.options.start_timeout
        pending = list(self.services if services is None else services)
        while pending:
            for service in list(pending):
                if service.process.poll() is not None:
                    raise RuntimeError(
                        f"{service.spec.name} exited with {service.process.returncode} during "
                        f"start; last lines of {service.log_path}:\n{_tail(service.log_path)}"
                    )
                if await service_status(service.spec, service.address, timeout=1.0) == "SERVING":
                    pending.remove(service)
            if pending and time.monotonic() > deadline:
                names = ", ".join(s.spec.name for s in pending)
                raise TimeoutError(
                    f"{names} not SERVING within {self.options.start_timeout:.0f} s; "
                    f"see {self.options.data_dir / 'logs'}"
                )
            if pending:
                await asyncio.sleep(0.1)

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "database": redact_url(self.database_url),
            "nats": self.nats_url,
            "services": {
                s.spec.name: {"address": s.address, "pid": s.process.pid, "log": str(s.log_path)}
                for s in self.services
            },
        }
        (self.options.data_dir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def describe(self) -> str:
        rows = [
            (
                "postgres",
                redact_url(self.database_url),
                "embedded (pgserver)" if self.postgres else "DATABASE_URL",
            ),
            ("nats", self.nats_url, "embedded (nats-server)" if self.nats else "NATS_URL"),
        ]
        rows += [
            (s.spec.name, s.address, f"pid {s.process.pid}, log {s.log_path}")
            for s in self.services
        ]
        width = max(len(name) for name, _, _ in rows)
        return "\n".join(f"  {name:<{width}}  {where}  ({how})" for name, where, how in rows)

    async def stop(self, *, timeout: float = 20.0) -> list[tuple[str, int | None]]:
        """SIGTERM every service (newest first), then NATS and PostgreSQL; exit codes."""
        exits: list[tuple[str, int | None]] = []
        for service in reversed(self.services):
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in reversed(self.services):
            try:
                code = await asyncio.to_thread(service.process.wait, timeout)
            except subprocess.TimeoutExpired:
                service.process.kill()
                code = await asyncio.to_thread(service.process.wait)
            exits.append((service.spec.name, code))
        self.services = []
        if self.nats is not None:
            await asyncio.to_thread(self.nats.stop)
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
        if self._lock is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.options.data_dir / STATE_FILE).unlink()
            self._lock.close()
            self._lock = None
        return exits

    async def watch(self, stop: asyncio.Event) -> str | None:
        """Waits for `stop`; returns a reason if a service died on its own first."""
        while not stop.is_set():
            for service in self.services:
                if service.process.poll() is not None:
                    return (
                        f"{service.spec.name} exited with {service.process.returncode}; "
                        f"last lines of {service.log_path}:\n{_tail(service.log_path)}"
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
        return None


# Work run against a suite once it is up (`cdp demo`'s job); True when every step succeeded.
Job = Callable[[Suite], Coroutine[Any, Any, bool]]


async def _run_job(job: Job, suite: Suite, stop: asyncio.Event) -> bool | None:
    """Runs `job`; None when Ctrl-C or a service that died ended it first (said why)."""
    work = asyncio.create_task(job(suite))
    watching = asyncio.create_task(suite.watch(stop))
    await asyncio.wait({work, watching}, return_when=asyncio.FIRST_COMPLETED)
    if work.done():
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        return work.result()
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    failure = watching.result()
    print(f"cdp: {failure}" if failure else "cdp: interrupted", file=sys.stderr, flush=True)
    return None


async def run_up(options: UpOptions, *, job: Job | None = None, keep_serving: bool = True) -> int:
    """Starts the suite, runs `job` against it if given, then serves until Ctrl-C (or stops
    at once without `keep_serving`). Exit code 0 when all went well, 1 otherwise."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    suite = Suite(options)
    try:
        print("cdp: starting the suite ...", file=sys.stderr, flush=True)
        await suite.start()
        print("cdp: the suite is up:\n" + suite.describe(), flush=True)
        succeeded = True
        if job is not None:
            outcome = await _run_job(job, suite, stop)
            if outcome is None:
                return 1
            succeeded = outcome
        if not keep_serving:
            return 0 if succeeded else 1
        print("cdp: press Ctrl-C to stop", flush=True)
        failure = await suite.watch(stop)
        if failure:
            print(f"cdp: {failure}", file=sys.stderr)
            return 1
        return 0 if succeeded else 1
    except (RuntimeError, TimeoutError, OSError) as error:
        print(f"cdp: {error}", file=sys.stderr)
        return 1
    finally:
        print("cdp: stopping ...", file=sys.stderr, flush=True)
        exits = await suite.stop()
        for name, code in exits:
            print(f"cdp: {name} exited with {code}", file=sys.stderr)
        print("cdp: stopped", file=sys.stderr, flush=True)


async def run_status(data_dir: Path) -> int:
    state_path = data_dir / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        addresses = {name: entry["address"] for name, entry in state["services"].items()}
        width = max(len(name) for name in (*addresses, "postgres"))
        print(f"{'postgres':<{width}}  {state['database']}\n{'nats':<{width}}  {state['nats']}")
    else:
        addresses = {spec.name: f"127.0.0.1:{port_of(spec)}" for spec in SERVICES}
        print(f"(no {state_path}: checking the default ports)")
        width = max(len(name) for name in addresses)
    worst = 0
    specs = {spec.name: spec for spec in SERVICES}
    for name, address in addresses.items():
        status = await service_status(specs.get(name), address)
        print(f"{name:<{width}}  {address:<18} {status}")
        worst = max(worst, 0 if status == "SERVING" else 1)
    return worst
