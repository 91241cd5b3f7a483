"""Profile ingestion: fragments per second through the batch call, and the cost of one new
fragment as a customer's history grows (it must stay flat).

The identity and profile services run from their packaged pexes on an embedded PostgreSQL
and NATS, as `cdp up` runs them. Figures:

- batch ingestion (fragments/s), with customer ids and with identifiers resolved through
  the identity service (one BatchResolveIdentities per call), beside the floor: appending
  the same fragment rows to a bare table with one `INSERT ... SELECT FROM unnest` per batch
  over asyncpg (history alone, no profile maintained);
- one IngestProfileFragment for customers whose history holds 1, 10, 100 and 1,000
  fragments (measured round-robin across the sizes, so machine noise hits them alike),
  beside the cost at 1 fragment: flat means the ratio stays near 100%;
- each service's memory, idle and at its peak under this load.

    ./pants package services/identity:identity services/profile:profile cli:cdp && \\
        ./pants run bench/profile_ingest.py -- [--fragments 50000] [--samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import psutil
from benchkit import (
    MemorySampler,
    percentile,
    ratio_line,
    service_pids,
    suite_running,
    summarize_latencies,
)
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_cli.services import address_of, by_name
from cdp_embedded import to_asyncpg_dsn

SOURCES = ("crm", "ecommerce", "support", "mailchimp")
HISTORY_SIZES = (1, 10, 100, 1000)
START = datetime(2026, 1, 1, tzinfo=UTC)


def attributes(rng: random.Random, n: int) -> dict[str, Any]:
    """A realistic fragment: names, an email, tags, metrics, preferences, a counter."""
    return {
        "user": {
            "firstName": rng.choice(("Ada", "Grace", "Edsger", "Barbara", "Alan")),
            "email": f"person{n % 100_000}@bench.example",
            "tags": rng.sample(("vip", "beta", "buyer", "newsletter", "churn-risk"), 2),
        },
        "customer": {"totalSpent": round(rng.uniform(0, 5000), 2), "orderCount": rng.randrange(50)},
        "preferences": {"email": {"weekly": rng.random() < 0.5}, "language": "en"},
        "activity": {"visits": n},
    }


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def fragment(
    rng: random.Random, n: int, *, customer_id: str = "", email: str = ""
) -> profile_pb2.ProfileFragment:
    document = Struct()
    document.update(attributes(rng, n))
    return profile_pb2.ProfileFragment(
        source=SOURCES[n % len(SOURCES)],
        customer_id=customer_id,
        identifiers=common_pb2.Identifiers(email=email),
        attributes=document,
        observed_at=stamp(START + timedelta(seconds=n)),
    )


def cpu_seconds(pid: int) -> float:
    usage = psutil.Process(pid).cpu_times()
    return float(usage.user + usage.system)


async def ingest_batches(
    stub: Any, batches: Sequence[profile_pb2.IngestProfileFragmentsRequest], in_flight: int
) -> float:
    """Fragments per second for `batches`, `in_flight` calls at a time; every item must land."""
    gate = asyncio.Semaphore(in_flight)
    total = sum(len(b.fragments) for b in batches)

    async def one(batch: profile_pb2.IngestProfileFragmentsRequest) -> None:
        async with gate:
            response = await stub.IngestProfileFragments(batch, timeout=600)
            failed = [r.error.message for r in response.results if r.HasField("error")]
            if failed:
                raise RuntimeError(f"{len(failed)} fragments refused, e.g. {failed[0]}")

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in batches))
    return total / (time.perf_counter() - started)


async def floor_rate(
    dsn: str,
    kwargs: dict[str, Any],
    batches: Sequence[profile_pb2.IngestProfileFragmentsRequest],
    in_flight: int,
) -> float:
    """The same rows appended to a bare history table, with as many batches in flight: what
    storing the history alone costs, with no profile maintained."""
    rows = [
        [
            (
                uuid.uuid4(),
                uuid.UUID(f.customer_id),
                f.source,
                f.observed_at.ToDatetime(tzinfo=UTC),
                json.dumps(json_format.MessageToDict(f.attributes)),
            )
            for f in batch.fragments
        ]
        for batch in batches
    ]
    pool = await asyncpg.create_pool(dsn, min_size=in_flight, max_size=in_flight, **kwargs)
    await pool.execute(
        "CREATE TABLE public.bench_floor_fragments (id uuid PRIMARY KEY, "
        "customer_id uuid NOT NULL, source text NOT NULL, observed_at timestamptz NOT NULL, "
        "attributes jsonb NOT NULL)"
    )
    await pool.execute("CREATE INDEX ON public.bench_floor_fragments (customer_id)")
    gate = asyncio.Semaphore(in_flight)

    async def one(batch_rows: list[tuple[Any, ...]]) -> None:
        async with gate:
            await pool.execute(
                "INSERT INTO public.bench_floor_fragments SELECT * FROM unnest($1::uuid[], "
                "$2::uuid[], $3::text[], $4::timestamptz[], $5::text[]::jsonb[])",
                [r[0] for r in batch_rows],
                [r[1] for r in batch_rows],
                [r[2] for r in batch_rows],
                [r[3] for r in batch_rows],
                [r[4] for r in batch_rows],
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(batch_rows) for batch_rows in rows))
    elapsed = time.perf_counter() - started
    await pool.close()
    return sum(len(r) for r in rows) / elapsed


async def grow_histories(
    stub: Any, rng: random.Random, customers: dict[int, list[str]], batch_size: int
) -> None:
    """Gives every customer of `customers[size]` a history of `size` fragments."""
    pending: list[profile_pb2.ProfileFragment] = []
    n = 1_000_000
    for size, ids in customers.items():
        for customer in ids:
            for _ in range(size):
                n += 1
                pending.append(fragment(rng, n, customer_id=customer))
    batches = [
        profile_pb2.IngestProfileFragmentsRequest(fragments=pending[i : i + batch_size])
        for i in range(0, len(pending), batch_size)
    ]
    await ingest_batches(stub, batches, 2)


async def wait_for_outbox(connection: asyncpg.Connection) -> None:
    """Lets the outbox relay publish everything, so measurements see a quiet service."""
    while await connection.fetchval("SELECT count(*) FROM profile.outbox"):
        await asyncio.sleep(0.2)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fragments", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--resolved-fragments", type=int, default=10_000)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(11)
    env = {"CDP_LOG_LEVEL": "WARNING"}

    async with suite_running(["identity", "profile"], extra_env=env) as suite:
        sampler = MemorySampler(service_pids(suite))
        with sampler:
            channel = grpc.aio.insecure_channel(
                address_of(by_name("profile")),
                options=[("grpc.max_send_message_length", 64 * 2**20)],
            )
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            dsn, kwargs = to_asyncpg_dsn(suite.database_url)
            connection = await asyncpg.connect(dsn, **kwargs)

            profile_pid = service_pids(suite)["profile"]

            # 1. Batch throughput, customer ids given: the profile path alone.
            customer_ids = [str(uuid.uuid4()) for _ in range(args.customers)]
            by_id = [
                profile_pb2.IngestProfileFragmentsRequest(
                    fragments=[
                        fragment(rng, n, customer_id=customer_ids[n % args.customers])
                        for n in range(start, min(start + args.batch_size, args.fragments))
                    ]
                )
                for start in range(0, args.fragments, args.batch_size)
            ]
            cpu_before = cpu_seconds(profile_pid)
            id_rate = await ingest_batches(stub, by_id, args.in_flight)
            await wait_for_outbox(connection)
            # The service's own CPU per fragment, relaying its events included: on a shared
            # machine this moves much less than the rate does.
            cpu_per_fragment = (cpu_seconds(profile_pid) - cpu_before) / args.fragments * 1000
            floor = await floor_rate(dsn, kwargs, by_id, args.in_flight)

            # 2. Batch throughput with identifiers: one identity call per batch as well.
            resolved = [
                profile_pb2.IngestProfileFragmentsRequest(
                    fragments=[
                        fragment(rng, n, email=f"bench{n % 5000}@resolve.example")
                        for n in range(start, min(start + args.batch_size, args.resolved_fragments))
                    ]
                )
                for start in range(0, args.resolved_fragments, args.batch_size)
            ]
            resolved_rate = await ingest_batches(stub, resolved, args.in_flight)
            await wait_for_outbox(connection)

            # 3. One more fragment as history grows.
            histories = {
                size: [str(uuid.uuid4()) for _ in range(args.samples)] for size in HISTORY_SIZES
            }
            await grow_histories(stub, rng, histories, args.batch_size)
            await wait_for_outbox(connection)
            await connection.execute("ANALYZE")
            latencies: dict[int, list[float]] = {size: [] for size in HISTORY_SIZES}
            n = 5_000_000
            for index in range(args.samples):
                for size in HISTORY_SIZES:
                    n += 1
                    request = profile_pb2.IngestProfileFragmentRequest(
                        fragment=fragment(rng, n, customer_id=histories[size][index])
                    )
                    started = time.perf_counter()
                    await stub.IngestProfileFragment(request, timeout=30)
                    latencies[size].append((time.perf_counter() - started) * 1000)
            stored = await connection.fetchval("SELECT count(*) FROM profile.fragments")
            await connection.close()
            await channel.close(None)

    print(f"profile ingestion ({stored:,} fragments stored in the run)")
    print(
        "  "
        + ratio_line(
            f"batch ingest with customer ids ({args.batch_size} per call, {args.in_flight} "
            "in flight)",
            id_rate,
            floor,
            "fragments/s",
            "the floor appends the same rows to a bare table: history alone",
        )
    )
    print(
        f"  profile CPU per fragment (batch path, outbox relay included): "
        f"{cpu_per_fragment:.3f} ms, i.e. at most {1000 / cpu_per_fragment:,.0f} fragments/s "
        "per core"
    )
    print(f"  batch ingest with identifiers resolved by identity: {resolved_rate:,.0f} fragments/s")
    print("  one new fragment, by the customer's history before it:")
    for size in HISTORY_SIZES:
        print(f"    {size:>5,} fragments: {summarize_latencies(latencies[size])}")
    base = percentile(latencies[1], 0.5)
    for size in HISTORY_SIZES[1:]:
        print(
            "  "
            + ratio_line(
                f"p50 at {size:,} fragments of history vs at 1",
                percentile(latencies[size], 0.5),
                base,
                "ms",
                "goal: flat, within noise of 100%",
                decimals=2,
            )
        )
    print(sampler.report())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
