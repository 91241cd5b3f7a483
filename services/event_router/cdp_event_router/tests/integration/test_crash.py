"""kill -9 in the middle of a run loses nothing acknowledged and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp_embedded import EmbeddedNats, to_asyncpg_dsn
from cdp_embedded.nats import free_port
from cdp_event_router import main as router_main
from cdp_testing import wait_until

from .conftest import Peers, stream_messages

CUSTOMER = "5f0c6c1e-8d0e-4a5b-9a7c-1d2e3f4a5b6c"


class RouterProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", router_main.__name__],
                                        env=self.env)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def router_process(database_url: str, nats: EmbeddedNats, peers: Peers) -> Iterator[RouterProcess]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "DATABASE_URL": database_url, "NATS_URL": nats.url,
        "CDP_GRPC_PORT": str(port), "CDP_EVENTS_HTTP_PORT": str(free_port()),
        "CDP_IDENTITY_ADDR": peers.identity_addr, "CDP_PROFILE_ADDR": peers.profile_addr,
        "CDP_EVENTS_TRIGGERS": "false", "CDP_LOG_FORMAT": "text", "CDP_LOG_LEVEL": "WARNING",
        "CDP_EVENTS_BATCH_MAX_DELAY_SECONDS": "0.1",
    }
    process = RouterProcess(env)
    process.env["ADDRESS"] = f"127.0.0.1:{port}"
    try:
        yield process
    finally:
        process.stop()


def batch(start: int, size: int) -> events_pb2.PublishEventsRequest:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return events_pb2.PublishEventsRequest(events=[
        events_pb2.Event(id=f"crash-{n}", type="page.viewed" if n % 2 else "order.completed",
                         source="web", timestamp=stamp, customer_id=CUSTOMER)
        for n in range(start, start + size)
    ])


async def unpublished(database_url: str) -> bool:
    dsn, kwargs = to_asyncpg_dsn(database_url)
    connection = await asyncpg.connect(dsn, **kwargs)
    try:
        pending: int = await connection.fetchval(
            "SELECT count(*) FROM event_router.events WHERE published_at IS NULL")
        return pending > 0
    finally:
        await connection.close()


async def serving(address: str) -> bool:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1)
            return response.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.aio.AioRpcError:
        return False


async def test_kill_9_mid_run_keeps_every_acknowledged_event_exactly_once(
    router_process: RouterProcess, database_url: str, nats: EmbeddedNats
) -> None:
    address = router_process.env["ADDRESS"]
    acknowledged: set[str] = set()
    router_process.start()
    await wait_until(lambda: serving(address), timeout=60, message="router up")
    next_id, size, killed = 0, 200, False
    async with grpc.aio.insecure_channel(address) as channel:
        stub = events_pb2_grpc.EventRouterServiceStub(channel)
        while next_id < 6000:
            request = batch(next_id, size)
            if next_id == 2400 and not killed:
                # Kill while a publish is in flight and the relay still has rows to publish.
                call = stub.PublishEvents(request, timeout=30)
                await wait_until(lambda: unpublished(database_url), timeout=30,
                                 interval=0.001, message="a relay backlog")
                router_process.kill()
                killed = True
                with pytest.raises(grpc.aio.AioRpcError):
                    await call
                router_process.start()
                await wait_until(lambda: serving(address), timeout=60, message="router back")
                continue  # the same batch again: what was stored comes back as duplicates
            try:
                response = await stub.PublishEvents(request, timeout=30)
            except grpc.aio.AioRpcError:
                continue
            for result in response.results:
                assert result.status in (events_pb2.PUBLISH_STATUS_ACCEPTED,
                                         events_pb2.PUBLISH_STATUS_DUPLICATE)
                acknowledged.add(result.event_id)
            next_id += size
    assert killed and len(acknowledged) == 6000
    dsn, kwargs = to_asyncpg_dsn(database_url)
    connection = await asyncpg.connect(dsn, **kwargs)
    try:
        async def all_published() -> bool:
            pending: int = await connection.fetchval(
                "SELECT count(*) FROM event_router.events WHERE published_at IS NULL")
            return pending == 0

        await wait_until(all_published, timeout=60, message="relay caught up")
        stored = Counter(r[0] for r in await connection.fetch(
            "SELECT id FROM event_router.events"))
    finally:
        await connection.close()
    assert set(stored) == acknowledged and max(stored.values()) == 1
    on_stream = Counter(m.headers["ce-id"] for m in
                        await stream_messages(nats.url, "cdp.events.>", timeout=2.0))
    assert set(on_stream) == acknowledged
    assert max(on_stream.values()) == 1, [k for k, v in on_stream.items() if v > 1][:5]
