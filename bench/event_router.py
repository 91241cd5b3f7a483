"""Event router throughput end to end, beside the same-run floor of storing and publishing.

The identity, profile and event-router services run from their packaged pexes on an
embedded PostgreSQL and NATS, as `cdp up` runs them. Events name no customer, only a user id
and an email, so every batch is validated, resolved through the identity service (one batch
call), routed, stored once and published by the relay to `cdp.events.<type>` and one
`cdp.routed.<target>.<type>` per target, each acknowledged by JetStream. Figures:

- sustained events/s through PublishEvents batches, from the first call until the last
  event is on the stream (seen by a subscriber of `cdp.events.>`), with p50 and p99 of
  (a) the PublishEvents call (stored, acknowledged to the client) and (b) end to end, from a
  batch's call to its last event on the stream;
- the floor, measured right after on the same machine: the same rows, read back from the
  event store, written with asyncpg COPY into a table shaped and indexed like the store,
  and the same messages (same subjects' shape, headers and bodies) published to a JetStream
  stream with every ack awaited, as many batches in flight;
- the ratio (goal: at least 30% of the floor on 2 cores, stretching to 50%);
- each service's memory, idle and at its peak.

    ./pants package services/identity:identity services/profile:profile \\
        services/event_router:event_router cli:cdp && \\
        ./pants run bench/event_router.py -- [--events 50000] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import nats
from benchkit import (
    MemorySampler,
    percentile,
    ratio_line,
    service_pids,
    suite_running,
    summarize_latencies,
)
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp_cli.services import address_of, by_name
from cdp_embedded import to_asyncpg_dsn

# A web shop's mix: mostly views, some carts and orders, a few email events.
MIX = (
    ("page.viewed", 40), ("product.viewed", 30), ("cart.updated", 12), ("email.opened", 8),
    ("order.completed", 5), ("email.clicked", 5),
)
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
FLOOR_STREAM = "BENCH_FLOOR"


def event(rng: random.Random, n: int, users: int, run: str) -> events_pb2.Event:
    kinds, weights = zip(*MIX, strict=True)
    event_type = rng.choices(kinds, weights)[0]
    user = rng.randrange(users)
    properties = Struct()
    values: dict[str, Any] = {"path": f"/products/{rng.randrange(5000)}",
                              "title": "Blue running shoes", "price": round(rng.uniform(5, 300), 2)}
    if event_type == "order.completed":
        values.update({"order_id": f"o-{n}", "total": round(rng.uniform(10, 900), 2),
                       "currency": "EUR", "items": rng.randrange(1, 6)})
    properties.update(values)
    stamp = Timestamp()
    stamp.FromDatetime(START + timedelta(milliseconds=n))
    return events_pb2.Event(
        id=f"{run}-{n}", type=event_type, source="web", timestamp=stamp,
        identifiers=common_pb2.Identifiers(user_id=f"user-{user}",
                                           email=f"user{user}@bench.example"),
        properties=properties,
        context=events_pb2.EventContext(ip="203.0.113.7", user_agent="Mozilla/5.0 (bench)",
                                        locale="en-GB", page_url="https://shop.example/p"),
    )


def batches(rng: random.Random, count: int, size: int, users: int, run: str
            ) -> list[events_pb2.PublishEventsRequest]:
    return [
        events_pb2.PublishEventsRequest(events=[
            event(rng, n, users, run) for n in range(start, min(start + size, count))])
        for start in range(0, count, size)
    ]


class StreamWatch:
    """When each event id first appeared on `cdp.events.>` (a core subscription sees every
    message JetStream stored on those subjects)."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def on_message(self, message: Msg) -> None:
        event_id = (message.headers or {}).get("ce-id", "")
        self.seen.setdefault(event_id, time.perf_counter())
        self.changed.set()

    async def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while len(self.seen) < count:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.seen)} of {count} events on the stream")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass


async def publish_all(stub: Any, requests: Sequence[events_pb2.PublishEventsRequest],
                      in_flight: int) -> list[tuple[float, float, list[str]]]:
    """Sends every batch, `in_flight` at a time; (started, answered, event ids) per batch."""
    gate = asyncio.Semaphore(in_flight)
    timings: list[tuple[float, float, list[str]]] = []

    async def one(request: events_pb2.PublishEventsRequest) -> None:
        async with gate:
            started = time.perf_counter()
            response = await stub.PublishEvents(request, timeout=600)
            answered = time.perf_counter()
            refused = [r for r in response.results
                       if r.status != events_pb2.PUBLISH_STATUS_ACCEPTED]
            if refused:
                raise RuntimeError(f"{len(refused)} events not accepted, e.g. {refused[0]}")
            timings.append((started, answered, [e.id for e in request.events]))

    await asyncio.gather(*(one(r) for r in requests))
    return timings


async def floor_rate(dsn: str, kwargs: dict[str, Any], nats_url: str, run: str,
                     batch_size: int, in_flight: int) -> tuple[float, int]:
    """The same rows COPied into a table like the store, the same messages published with
    acks awaited, batch by batch with `in_flight` batches at a time: events/s, messages."""
    connection = await asyncpg.connect(dsn, **kwargs)
    rows = await connection.fetch(
        "SELECT id, type, source, customer_id, resolved_customer_id, occurred_at, received_at,"
        " properties::text, targets, lane, payload, trace_headers::text FROM event_router.events"
        " WHERE id LIKE $1 ORDER BY seq", f"{run}-%")
    await connection.execute(
        "CREATE TABLE public.bench_floor_events (LIKE event_router.events INCLUDING ALL)")
    await connection.close()
    pool = await asyncpg.create_pool(dsn, min_size=in_flight, max_size=in_flight, **kwargs)
    client = await nats.connect(nats_url)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name=FLOOR_STREAM, subjects=["bench.>"],
                                     storage=StorageType.FILE, duplicate_window=600))
    columns = ["id", "type", "source", "customer_id", "resolved_customer_id", "occurred_at",
               "received_at", "properties", "targets", "lane", "payload", "trace_headers"]
    chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    gate = asyncio.Semaphore(in_flight)
    messages = 0

    def headers(row: Any, message_id: str) -> dict[str, str]:
        return {"ce-specversion": "1.0", "ce-id": row["id"], "ce-type": row["type"],
                "ce-source": f"/cdp/sources/{row['source']}",
                "ce-time": row["occurred_at"].isoformat(),
                "ce-subject": str(row["customer_id"]),
                "ce-dataschema": "cdp.events.v1.Event", "content-type": "application/protobuf",
                "Nats-Msg-Id": message_id}

    async def one(chunk: Sequence[Any]) -> None:
        nonlocal messages
        async with gate:
            async with pool.acquire() as copy_connection:
                await copy_connection.copy_records_to_table(
                    "bench_floor_events", schema_name="public", columns=columns,
                    records=[(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                              r[10], r[11]) for r in chunk])
            acks = []
            for row in chunk:
                payload = bytes(row["payload"])
                acks.append(await js.publish_async(f"bench.events.{row['type']}", payload,
                                                   headers=headers(row, row["id"])))
                for target in row["targets"]:
                    acks.append(await js.publish_async(
                        f"bench.routed.{target}.{row['type']}", payload,
                        headers=headers(row, f"{row['id']}:{target}")))
            await asyncio.gather(*acks)
            messages += len(acks)

    started = time.perf_counter()
    await asyncio.gather(*(one(chunk) for chunk in chunks))
    elapsed = time.perf_counter() - started
    await client.close()
    await pool.close()
    return len(rows) / elapsed, messages


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(5)
    env = {"CDP_LOG_LEVEL": "WARNING", "CDP_EVENTS_TRIGGERS": "false"}

    async with suite_running(["identity", "profile", "event_router"], extra_env=env) as suite:
        channel = grpc.aio.insecure_channel(
            address_of(by_name("event_router")),
            options=[("grpc.max_send_message_length", 64 * 2**20)])
        stub = events_pb2_grpc.EventRouterServiceStub(channel)
        watch = StreamWatch()
        client = await nats.connect(suite.nats_url)
        await client.subscribe("cdp.events.>", cb=watch.on_message)
        requests = batches(rng, args.events, args.batch_size, args.users, "run")
        sampler = MemorySampler(service_pids(suite))
        with sampler:
            # Warm-up, not measured: every user known to identity, as on a live site where
            # most events come from people seen before.
            warm = batches(rng, args.users, args.batch_size, args.users, "warm")
            for index, request in enumerate(warm):
                for offset, item in enumerate(request.events):
                    user = index * args.batch_size + offset
                    item.identifiers.user_id = f"user-{user}"
                    item.identifiers.email = f"user{user}@bench.example"
            await publish_all(stub, warm, args.in_flight)
            await watch.wait_for(args.users, timeout=600)
            started = time.perf_counter()
            timings = await publish_all(stub, requests, args.in_flight)
            await watch.wait_for(args.users + args.events, timeout=600)
            finished = max(watch.seen[i] for _, _, ids in timings for i in ids)
        rate = args.events / (finished - started)
        call_ms = [(answered - begun) * 1000 for begun, answered, _ in timings]
        end_to_end_ms = [(max(watch.seen[i] for i in ids) - begun) * 1000
                         for begun, _, ids in timings]
        await client.close()
        await channel.close(None)
        dsn, kwargs = to_asyncpg_dsn(suite.database_url)
        floor, messages = await floor_rate(dsn, kwargs, suite.nats_url, "run", args.batch_size,
                                           args.in_flight)

    print(f"event router ({args.events:,} events in batches of {args.batch_size}, "
          f"{args.in_flight} in flight, {args.users:,} users resolved by identity; "
          f"{messages:,} JetStream messages: broadcast + routed)")
    print("  " + ratio_line(
        "sustained events/s end to end (validated, resolved, stored, on JetStream, acked)",
        rate, floor, "events/s",
        "goal >= 30%, stretch 50%; floor: asyncpg COPY of the same rows + the same messages "
        "published to JetStream with acks"))
    print(f"  PublishEvents call ({args.batch_size} events, stored and answered): "
          f"{summarize_latencies(call_ms)}")
    print(f"  end to end per batch (call to its last event on the stream): "
          f"p50 {percentile(end_to_end_ms, 0.5):.1f} ms, "
          f"p99 {percentile(end_to_end_ms, 0.99):.1f} ms")
    print("  triggers off (a separate consumer; the measure is ingest to stream). For scale: a "
          "RudderStack node on 2 cores sustains about 1,700 requests/s")
    print(json.dumps({"events_per_second": round(rate), "floor_events_per_second": round(floor),
                      "ratio": round(rate / floor, 3)}))
    print(sampler.report())
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
