"""Identity resolution speed over a million stored identities, beside the raw asyncpg floor.

Loads N customers (one email each) through the service's own batch call, then measures:
- single deterministic resolves over gRPC on localhost (p50, p99), beside one indexed
  asyncpg lookup of the same identifiers (the floor);
- batch resolves (identifier sets per second), beside one `= ANY($1)` asyncpg lookup of the
  same keys per batch (the floor).

    ./pants package services/identity:identity cli:cdp && \\
        ./pants run bench/identity_speed.py -- --identities 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import Any

import asyncpg
import grpc
from benchkit import (
    MemorySampler,
    percentile,
    ratio_line,
    service_pids,
    suite_running,
    summarize_latencies,
)

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_cli.services import address_of, by_name
from cdp_embedded import to_asyncpg_dsn


def email(number: int) -> str:
    return f"customer-{number:08d}@example.com"


def resolve_request(number: int) -> identity_pb2.ResolveIdentityRequest:
    return identity_pb2.ResolveIdentityRequest(
        identifiers=common_pb2.Identifiers(email=email(number)), source_platform="crm"
    )


async def load(stub: Any, count: int, batch: int) -> float:
    started = time.perf_counter()
    pending = list(range(0, count, batch))
    semaphore = asyncio.Semaphore(2)

    async def one(start: int) -> None:
        async with semaphore:
            items = [resolve_request(n) for n in range(start, min(start + batch, count))]
            response = await stub.BatchResolveIdentities(
                identity_pb2.BatchResolveIdentitiesRequest(items=items), timeout=600
            )
            assert all(r.HasField("resolution") for r in response.results)

    await asyncio.gather(*(one(start) for start in pending))
    return count / (time.perf_counter() - started)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--singles", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    rng = random.Random(7)

    async with suite_running(["identity"]) as suite:
        sampler = MemorySampler(service_pids(suite))
        with sampler:
            channel = grpc.aio.insecure_channel(address_of(by_name("identity")))
            stub = identity_pb2_grpc.IdentityServiceStub(channel)
            load_rate = await load(stub, args.identities, 5000)
            dsn, kwargs = to_asyncpg_dsn(suite.database_url)
            connection = await asyncpg.connect(dsn, **kwargs)
            await connection.execute("ANALYZE identity.identities")
            # Measure the steady state: the outbox relay has published every CustomerCreated.
            while await connection.fetchval("SELECT count(*) FROM identity.outbox"):
                await asyncio.sleep(0.2)

            # Floor and service measurements alternate call by call, so both see the same
            # machine (these machines are shared: load drifts over a run).
            singles = [rng.randrange(args.identities) for _ in range(args.singles)]
            floor_single: list[float] = []
            service_single: list[float] = []
            for number in singles:
                started = time.perf_counter()
                await connection.fetchval(
                    "SELECT customer_id FROM identity.identities "
                    "WHERE kind = 'email' AND platform = '' AND value = $1", email(number))
                floor_single.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await stub.ResolveIdentity(resolve_request(number), timeout=10)
                service_single.append((time.perf_counter() - started) * 1000)

            batches = [[rng.randrange(args.identities) for _ in range(args.batch_size)]
                       for _ in range(args.batches)]
            # Requests built before timing, as the floor's key lists are.
            calls = [identity_pb2.BatchResolveIdentitiesRequest(
                items=[resolve_request(n) for n in numbers]) for numbers in batches]
            floor_seconds = service_seconds = 0.0
            for numbers, call in zip(batches, calls, strict=True):
                started = time.perf_counter()
                rows = await connection.fetch(
                    "SELECT value, customer_id FROM identity.identities "
                    "WHERE kind = 'email' AND platform = '' AND value = ANY($1::text[])",
                    [email(n) for n in numbers])
                floor_seconds += time.perf_counter() - started
                assert len(rows) == len(set(numbers))
                started = time.perf_counter()
                response = await stub.BatchResolveIdentities(call, timeout=60)
                service_seconds += time.perf_counter() - started
                assert all(r.resolution.method == identity_pb2.MATCH_METHOD_DETERMINISTIC
                           for r in response.results)
            floor_rate = args.batch_size * args.batches / floor_seconds
            batch_rate = args.batch_size * args.batches / service_seconds
            stored = await connection.fetchval("SELECT count(*) FROM identity.identities")
            await connection.close()
            await channel.close(None)

    print(f"identity resolution over {stored:,} stored identities "
          f"(loaded through BatchResolveIdentities at {load_rate:,.0f}/s)")
    print(f"  single resolve over gRPC : {summarize_latencies(service_single)}")
    print(f"  floor, one asyncpg lookup: {summarize_latencies(floor_single)}")
    p99 = percentile(service_single, 0.99)
    print(f"  single deterministic p99 {p99:.2f} ms "
          f"({'met' if p99 < 5 else 'NOT met'}: goal p99 < 5 ms)")
    print("  " + ratio_line(f"batch resolve ({args.batch_size} per call)", batch_rate,
                            floor_rate, "identifier sets/s",
                            "goal >= 50% of the raw = ANY($1) batch lookup"))
    print(sampler.report())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
