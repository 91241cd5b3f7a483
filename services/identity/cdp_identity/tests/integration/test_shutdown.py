from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_embedded import EmbeddedNats, to_asyncpg_dsn
from cdp_embedded.nats import free_port
from cdp_identity import main as identity_main
from cdp_testing import wait_until


@pytest.fixture
def identity_process(
    database_url: str, nats: EmbeddedNats
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "DATABASE_URL": database_url,
        "NATS_URL": nats.url,
        "CDP_GRPC_PORT": str(port),
        "CDP_SHUTDOWN_GRACE_SECONDS": "20",
        "CDP_LOG_FORMAT": "text",
    }
    process = subprocess.Popen([sys.executable, "-m", identity_main.__name__], env=env)
    try:
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# Resolved one by one, a batch this size takes a few seconds: long enough to be in flight
# when SIGTERM lands, well inside the grace period.
BATCH = 600


async def serving_status(address: str) -> int:
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
            return int(response.status)
    except grpc.aio.AioRpcError:
        return -1


async def test_sigterm_turns_not_serving_drains_in_flight_calls_and_exits_zero(
    identity_process: tuple[subprocess.Popen[bytes], str], database_url: str
) -> None:
    process, address = identity_process
    serving = health_pb2.HealthCheckResponse.SERVING

    async def is_serving() -> bool:
        return await serving_status(address) == serving

    await wait_until(is_serving, timeout=60, message="identity SERVING")
    dsn, kwargs = to_asyncpg_dsn(database_url)
    database = await asyncpg.connect(dsn, **kwargs)

    async def batch_in_flight() -> bool:
        count: int = await database.fetchval("SELECT count(*) FROM identity.customers")
        return count > 0

    async with grpc.aio.insecure_channel(address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        statuses: list[int] = []

        async def follow() -> None:
            async for update in watch:
                statuses.append(update.status)

        follower = asyncio.create_task(follow())
        items = [
            identity_pb2.ResolveIdentityRequest(
                identifiers=common_pb2.Identifiers(email=f"drain-{i}@example.com")
            )
            for i in range(BATCH)
        ]
        batch = identity_pb2_grpc.IdentityServiceStub(channel).BatchResolveIdentities(
            identity_pb2.BatchResolveIdentitiesRequest(items=items), timeout=60
        )
        await wait_until(batch_in_flight, timeout=30, message="batch in flight")
        process.send_signal(signal.SIGTERM)
        response = await batch
        await wait_until(
            lambda: health_pb2.HealthCheckResponse.NOT_SERVING in statuses,
            message="NOT_SERVING on the watch",
        )
        # An open Watch stream is an in-flight call too: the server would wait its whole
        # grace period for it.
        follower.cancel()
        exit_code = await asyncio.to_thread(process.wait, 30)
    remaining = await database.fetchval("SELECT count(*) FROM identity.customers")
    await database.close()
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert statuses.index(health_pb2.HealthCheckResponse.NOT_SERVING) > statuses.index(serving)
    assert len(response.results) == BATCH
    assert all(r.HasField("resolution") for r in response.results)
    assert remaining == BATCH
    assert exit_code == 0


async def test_sigterm_still_exits_when_nats_went_away_first(
    identity_process: tuple[subprocess.Popen[bytes], str], nats: EmbeddedNats
) -> None:
    # What `cdp up` killed outright looks like to its children: the broker dies with it, and
    # each service then gets SIGTERM. Shutdown must not wait on a peer that is gone.
    process, address = identity_process

    async def is_serving() -> bool:
        return await serving_status(address) == health_pb2.HealthCheckResponse.SERVING

    await wait_until(is_serving, timeout=60, message="identity SERVING")
    nats.stop()
    process.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(process.wait, 45)
    assert exit_code == 0
