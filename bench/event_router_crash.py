"""No loss: kill -9 the packaged event router in the middle of a run, restart it, count.

The identity, profile and event-router pexes run as `cdp up` runs them. A client sends
batches of events (PublishEvents, a few in flight) and, like any SDK, sends a batch again
when its call fails. Part-way through, while calls are in flight and the relay still has
stored rows to publish, the router gets SIGKILL; it is started again and the run goes on.
Then, once the relay has caught up, the figures:

- acknowledged events (accepted or answered as duplicates of an earlier attempt);
- stored: distinct ids in the event store, rows per id at most (must be 1), and
  acknowledged events missing from the store (must be 0);
- on the stream: distinct ids on `cdp.events.>`, copies per id at most (must be 1), missing;
- routed copies on `cdp.routed.>`: expected (one per stored target), on the stream,
  duplicates (must be 0);
- how long the router took to serve again.

    ./pants package services/identity:identity services/profile:profile \\
        services/event_router:event_router cli:cdp && \\
        ./pants run bench/event_router_crash.py -- [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import asyncpg
import grpc
import nats
from benchkit import suite_running
from google.protobuf.timestamp_pb2 import Timestamp
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp_cli.services import address_of, by_name
from cdp_embedded import to_asyncpg_dsn

TYPES = ("page.viewed", "order.completed", "product.viewed", "cart.updated")


def batch(start: int, size: int) -> events_pb2.PublishEventsRequest:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return events_pb2.PublishEventsRequest(events=[
        events_pb2.Event(id=f"crash-{n}", type=TYPES[n % len(TYPES)], source="web",
                         timestamp=stamp,
                         identifiers=common_pb2.Identifiers(user_id=f"crash-user-{n % 500}"))
        for n in range(start, start + size)
    ])


async def stream_counts(nats_url: str, subject: str, key_headers: tuple[str, ...]
                        ) -> Counter[str]:
    """How many messages on `subject` carry each key (the given headers joined)."""
    client = await nats.connect(nats_url)
    js = client.jetstream()
    counts: Counter[str] = Counter()
    subscription = await js.pull_subscribe(
        subject, durable=None, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    try:
        while True:
            try:
                messages = await subscription.fetch(1000, timeout=2.0)
            except (TimeoutError, NatsTimeoutError):
                break
            for message in messages:
                headers = message.headers or {}
                counts[":".join(headers.get(h, "") for h in key_headers)] += 1
                await message.ack()
    finally:
        await subscription.unsubscribe()
        await client.close()
    return counts


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=3)
    parser.add_argument("--kill-at", type=float, default=0.4,
                        help="share of the run sent when the router is killed")
    args = parser.parse_args()
    env = {"CDP_LOG_LEVEL": "WARNING", "CDP_EVENTS_TRIGGERS": "false",
           # Batched events wait for the relay a little: a crash then leaves a backlog.
           "CDP_EVENTS_BATCH_MAX_DELAY_SECONDS": "0.5"}

    async with suite_running(["identity", "profile", "event_router"], extra_env=env) as suite:
        address = address_of(by_name("event_router"))
        dsn, kwargs = to_asyncpg_dsn(suite.database_url)
        database = await asyncpg.connect(dsn, **kwargs)
        acknowledged: set[str] = set()
        failed_calls = 0
        kill_from = int(args.events * args.kill_at) // args.batch_size * args.batch_size
        killed = asyncio.Event()
        restarted = asyncio.Event()
        recovery = 0.0
        starts = list(range(0, args.events, args.batch_size))
        crashing: list[asyncio.Task[None]] = []
        queue: asyncio.Queue[int] = asyncio.Queue()
        for start in starts:
            queue.put_nowait(start)

        async def crash() -> None:
            nonlocal recovery
            # Only with stored rows the relay has not published yet.
            while not await database.fetchval(
                    "SELECT count(*) FROM event_router.events WHERE published_at IS NULL"):
                await asyncio.sleep(0.001)
            router = next(s for s in suite.services if s.spec.name == "event_router")
            router.process.send_signal(signal.SIGKILL)
            router.process.wait()
            killed.set()
            began = time.perf_counter()
            await suite.relaunch("event_router")
            recovery = time.perf_counter() - began
            restarted.set()

        async def sender() -> None:
            nonlocal failed_calls
            while not queue.empty():
                start = queue.get_nowait()
                size = min(args.batch_size, args.events - start)
                while True:
                    if killed.is_set() and not restarted.is_set():
                        await restarted.wait()
                    try:
                        async with grpc.aio.insecure_channel(address) as channel:
                            stub = events_pb2_grpc.EventRouterServiceStub(channel)
                            response = await stub.PublishEvents(batch(start, size), timeout=30)
                    except grpc.aio.AioRpcError:
                        failed_calls += 1
                        await restarted.wait()
                        continue  # the same batch again, as an SDK retries
                    break
                for result in response.results:
                    if result.status in (events_pb2.PUBLISH_STATUS_ACCEPTED,
                                         events_pb2.PUBLISH_STATUS_DUPLICATE):
                        acknowledged.add(result.event_id)
                if start == kill_from:
                    crashing.append(asyncio.create_task(crash()))

        await asyncio.gather(*(sender() for _ in range(args.in_flight)))
        await asyncio.gather(*crashing)
        deadline = time.monotonic() + 120
        while await database.fetchval(
                "SELECT count(*) FROM event_router.events WHERE published_at IS NULL"):
            if time.monotonic() > deadline:
                raise TimeoutError("the relay did not catch up within 120 s")
            await asyncio.sleep(0.2)
        stored = Counter(r[0] for r in await database.fetch("SELECT id FROM event_router.events"))
        routed_expected = await database.fetchval(
            "SELECT coalesce(sum(cardinality(targets)), 0) FROM event_router.events")
        await database.close()
        broadcast = await stream_counts(suite.nats_url, "cdp.events.>", ("ce-id",))
        routed = await stream_counts(suite.nats_url, "cdp.routed.>", ("ce-id", "cdp-target"))

    lost_store = acknowledged - set(stored)
    lost_stream = acknowledged - set(broadcast)
    print(f"event router kill -9 mid-run ({args.events:,} events, batches of {args.batch_size}, "
          f"{args.in_flight} in flight, killed after {kill_from:,} sent)")
    print(f"  killed: {killed.is_set()}; serving again {recovery:.1f} s after the kill; "
          f"{failed_calls} calls failed and were sent again")
    print(f"  acknowledged: {len(acknowledged):,} of {args.events:,}")
    print(f"  stored: {len(stored):,} distinct; most rows for one id: {max(stored.values())}; "
          f"acknowledged but not stored: {len(lost_store)}")
    print(f"  on cdp.events.>: {len(broadcast):,} distinct; most copies of one id: "
          f"{max(broadcast.values())}; acknowledged but not on the stream: {len(lost_stream)}")
    print(f"  on cdp.routed.>: {sum(routed.values()):,} messages for {routed_expected:,} "
          f"routed copies stored; duplicates: {sum(c - 1 for c in routed.values())}")
    exact = (killed.is_set() and len(acknowledged) == args.events and not lost_store
             and not lost_stream and max(stored.values()) == 1 and max(broadcast.values()) == 1
             and sum(routed.values()) == routed_expected and max(routed.values()) == 1)
    print(f"  every acknowledged event stored and on the stream exactly once: "
          f"{'yes' if exact else 'NO'}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
