"""pytest fixtures giving a test real PostgreSQL, real NATS and span capture.

- `postgres_admin_url`: a PostgreSQL server for the session. `CDP_TEST_DATABASE_URL` when
  set (e.g. the machine's own server); otherwise an embedded pgserver shared by every test
  process of the run through one data folder (`CDP_TEST_DATA_DIR`, default /tmp/cdp-test-<uid>).
- `database_url`: a fresh, empty database per test, dropped afterwards.
- `nats`: a fresh nats-server with JetStream per test (milliseconds to start), so streams
  and consumers never leak between tests; `nats.kill()` / `nats.start()` restart it.
- `span_exporter` / `telemetry`: an in-memory exporter and a Telemetry exporting to it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdp_embedded import EmbeddedNats, EmbeddedPostgres, create_database
from cdp_embedded.postgres import drop_database
from cdp_telemetry import Telemetry, TelemetrySettings, configure_telemetry


def test_data_dir() -> Path:
    configured = os.environ.get("CDP_TEST_DATA_DIR")
    return Path(configured) if configured else Path(f"/tmp/cdp-test-{os.getuid()}")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    external = os.environ.get("CDP_TEST_DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(test_data_dir() / "pg16")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest_asyncio.fixture
async def database_url(postgres_admin_url: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = await create_database(postgres_admin_url, name, exist_ok=False)
    try:
        yield url
    finally:
        await drop_database(postgres_admin_url, name)


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(span_exporter: InMemorySpanExporter) -> Iterator[Telemetry]:
    built = configure_telemetry("test", TelemetrySettings(), exporters=[span_exporter])
    try:
        yield built
    finally:
        built.shutdown()
