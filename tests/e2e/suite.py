"""The suite as a user starts it, for end-to-end tests: `cdp.pex up` from packaged binaries.

Every service, the embedded NATS and the HTTP side ports get free ports, so tests never
collide with each other or with a `cdp up` already running on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cdp_cli.services import SERVICES
from cdp_embedded.nats import free_port

T = TypeVar("T")

# Put in the sandbox by `runtime_package_dependencies` (see BUILD): the same pexes
# `./pants package ::` writes to dist/cdp/.
BIN_DIR = Path("cdp")
READY = "press Ctrl-C to stop"
# Settings that would point the suite at infrastructure outside the test.
OUTSIDE = ("DATABASE_URL", "NATS_URL", "MAILCHIMP_API_KEY", "MAILCHIMP_API_URL")
# Ports beside the gRPC ones: the router's HTTP API, the Mailchimp webhook endpoint.
SIDE_PORTS = ("CDP_EVENTS_HTTP_PORT", "MAILCHIMP_WEBHOOK_PORT")


@dataclass
class RunningSuite:
    process: subprocess.Popen[str]
    env: dict[str, str]
    data_dir: Path

    def port(self, service: str) -> int:
        return int(self.env[f"CDP_{service.upper()}_PORT"])

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.port(service)}"

    def cdp(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The CLI, pointed at this suite."""
        env = {**self.env, **{f"CDP_{spec.name.upper()}_ADDR": self.address(spec.name)
                              for spec in SERVICES}}
        return subprocess.run([str(BIN_DIR / "cdp.pex"), *args], env=env, capture_output=True,
                              text=True, timeout=timeout)

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        """Ctrl-C, as a user stops it; the exit code and everything it printed after."""
        self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, output


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], *, timeout: float = 60,
               message: str) -> T:
    """Calls `probe` until `accept` takes its result (the suite's effects are asynchronous);
    returns that result, or fails after `timeout` with the last one seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message}: not within {timeout} s; last {value!r}")
        time.sleep(0.2)


def wait_for_line(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                raise AssertionError(f"cdp up exited with {process.returncode}: {lines}")
            continue
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not printed within {timeout} s: {lines}")


def suite_env(tmp_path: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment `cdp.pex` runs the suite in: this machine's, minus anything that points
    outside the test, with a free port for every service, NATS and the side ports."""
    env = {key: value for key, value in os.environ.items() if key not in OUTSIDE}
    env.update({
        "CDP_BIN_DIR": str(BIN_DIR.resolve()),
        "CDP_DATA_DIR": str(tmp_path / "data"),
        "CDP_EMBEDDED_NATS_PORT": str(free_port()),
        **{f"CDP_{spec.name.upper()}_PORT": str(free_port()) for spec in SERVICES},
        **{name: str(free_port()) for name in SIDE_PORTS},
        **(extra_env or {}),
    })
    return env


@contextmanager
def suite_up(tmp_path: Path, extra_env: Mapping[str, str] | None = None,
             *, timeout: float = 240) -> Iterator[RunningSuite]:
    env = suite_env(tmp_path, extra_env)
    process = subprocess.Popen([str(BIN_DIR / "cdp.pex"), "up"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_line(process, READY, timeout=timeout)
        yield RunningSuite(process, env, tmp_path / "data")
    finally:
        if process.poll() is None:
            # Stopped as a user stops it, so the embedded PostgreSQL (a daemon that outlives
            # a killed parent) shuts down too; killed only if that does not finish.
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
