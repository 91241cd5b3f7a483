"""Segmentation over a large read model: counts beside hand-written SQL, the cost of one
profile change, and ListMembers memory as segments grow.

The segmentation service runs from its packaged pex on an embedded PostgreSQL and NATS, as
`cdp up` runs it. The read model is filled with COPY (the typed columns the attribute schema
declares), then the two example segments are created. Figures:

- CountMembers of each example segment through the service (gRPC, criteria compiled to one
  parameterised query) beside hand-written SQL for the same criteria on the same table,
  alternating, in the same run (goal: within 1.25x);
- the cost of re-evaluating one profile change: a burst of `cdp.profile.updated` events
  (read model upsert, every segment re-evaluated for the customer, deltas, inbox) divided by
  its size (goal: under 2 ms), and the latency of a single change from publish to stored
  membership (that one includes NATS and the consumer's fetch);
- ListMembers streamed for segments of different sizes, with the service's peak memory
  during each (flat: it must not grow with the segment);
- the service's memory, idle and at its peak.

    ./pants package services/segmentation:segmentation cli:cdp && \\
        ./pants run bench/segmentation.py -- [--profiles 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from benchkit import MemorySampler, percentile, ratio_line, service_pids, suite_running
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from nats import connect as connect_to_nats

from cdp.profile.v1 import profile_events_pb2
from cdp.segmentation.v1 import segmentation_pb2 as pb
from cdp.segmentation.v1 import segmentation_pb2_grpc
from cdp_bus import OutboxMessage
from cdp_cli.services import address_of, by_name
from cdp_embedded import to_asyncpg_dsn

EXAMPLES = Path("services/segmentation/examples")
FIELDS = (
    "customer.lifetime_value",
    "email.last_open_date",
    "mailchimp.status",
    "ecommerce.cart_abandoned_at",
    "ecommerce.cart.value",
    "user.email",
)


def example(name: str) -> pb.Segment:
    return json_format.Parse((EXAMPLES / f"{name}.json").read_text(), pb.Segment())


def profile_values(rng: random.Random, now: datetime) -> dict[str, Any]:
    """One customer: value uniform to 2,000, last open within 120 days, 80% subscribed, 30%
    with an abandoned cart in the last 30 days."""
    abandoned = rng.random() < 0.3
    return {
        "customer.lifetime_value": round(rng.uniform(0, 2000), 2),
        "email.last_open_date": now - timedelta(seconds=rng.uniform(0, 120 * 86400)),
        "mailchimp.status": "subscribed" if rng.random() < 0.8 else "unsubscribed",
        "ecommerce.cart_abandoned_at": now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        if abandoned else None,
        "ecommerce.cart.value": round(rng.uniform(0, 300), 2) if abandoned else None,
    }


async def load_profiles(connection: asyncpg.Connection, count: int, now: datetime) -> list[str]:
    columns = dict(await connection.fetch(
        "SELECT path, column_name FROM segmentation.fields WHERE path = ANY($1::text[])",
        list(FIELDS),
    ))
    rng = random.Random(7)
    ids: list[str] = []

    def records() -> Any:
        for index in range(count):
            customer = uuid.UUID(int=rng.getrandbits(128), version=4)
            ids.append(str(customer))
            values = profile_values(rng, now)
            email = f"customer{index}@example.com"
            yield (customer, 1, 0, email, now, *(values[f] for f in FIELDS[:-1]), email)

    started = time.perf_counter()
    await connection.copy_records_to_table(
        "profiles", schema_name="segmentation",
        columns=["customer_id", "version", "status", "email", "updated_at",
                 *(columns[f] for f in FIELDS)],
        records=records(),
    )
    await connection.execute("ANALYZE segmentation.profiles")
    print(f"read model: {count:,} profiles loaded by COPY in {time.perf_counter() - started:.1f} s")
    return ids


def hand_written(columns: dict[str, str]) -> dict[str, str]:
    """The same criteria, written by hand against the same table."""
    c = {path: f'"{column}"' for path, column in columns.items()}
    return {
        "high_value_email_engaged": (
            "SELECT count(*) FROM segmentation.profiles WHERE status = 0 "
            f"AND {c['customer.lifetime_value']} > 500 "
            f"AND {c['email.last_open_date']} >= now() - interval '30 days'"
        ),
        "subscribers_with_abandoned_carts": (
            "SELECT count(*) FROM segmentation.profiles WHERE status = 0 "
            f"AND {c['mailchimp.status']} = 'subscribed' "
            f"AND {c['ecommerce.cart_abandoned_at']} >= now() - interval '7 days' "
            f"AND {c['ecommerce.cart.value']} > 0"
        ),
    }


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def profile_event(customer: str, version: int, now: datetime, value: float) -> OutboxMessage:
    body = profile_events_pb2.ProfileUpdated(
        customer_id=customer, version=version, occurred_at=timestamp(now)
    )
    body.attributes.update({
        "customer": {"lifetime_value": value},
        "email": {"last_open_date": (now - timedelta(days=2)).isoformat()},
        "mailchimp": {"status": "subscribed"},
        "user": {"email": f"{customer[:8]}@example.com"},
    })
    return OutboxMessage.of_proto("cdp.profile.updated", body, source="/bench", about=customer)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7, help="count measurements per side")
    parser.add_argument("--burst", type=int, default=5000, help="profile changes in the burst")
    parser.add_argument("--singles", type=int, default=50, help="one-at-a-time changes")
    args = parser.parse_args()
    env = {"CDP_LOG_LEVEL": "WARNING", "CDP_SEGMENTATION_REEVALUATE_SECONDS": "3600",
           "CDP_DB_STATEMENT_TIMEOUT_MS": "600000"}
    now = datetime.now(UTC)

    async with suite_running(["segmentation"], extra_env=env) as suite:
        sampler = MemorySampler(service_pids(suite))
        dsn, kwargs = to_asyncpg_dsn(suite.database_url)
        connection = await asyncpg.connect(dsn, **kwargs)
        channel = grpc.aio.insecure_channel(address_of(by_name("segmentation")))
        stub = segmentation_pb2_grpc.SegmentationServiceStub(channel)
        bus = await connect_to_nats(suite.nats_url)
        with sampler:
            ids = await load_profiles(connection, args.profiles, now)
            segments: dict[str, pb.Segment] = {}
            for name in ("high_value_email_engaged", "subscribers_with_abandoned_carts"):
                started = time.perf_counter()
                reply = await stub.CreateSegment(
                    pb.CreateSegmentRequest(segment=example(name)), timeout=600
                )
                segments[name] = reply.segment
                print(f"create {name}: {reply.segment.member_count:,} members, evaluated and "
                      f"stored in {time.perf_counter() - started:.2f} s")

            # A realtime segment announces every entry: let the outbox relay finish sending
            # them first, so the service's process is as idle as PostgreSQL is for the floor.
            while await connection.fetchval("SELECT count(*) FROM segmentation.outbox"):
                await asyncio.sleep(0.2)
            columns = dict(await connection.fetch(
                "SELECT path, column_name FROM segmentation.fields"
            ))
            print("\ncount time, service (CountMembers over gRPC) vs hand-written SQL "
                  "(asyncpg, literals), median of alternating rounds:")
            for name, sql in hand_written(columns).items():
                service_ms: list[float] = []
                hand_ms: list[float] = []
                counts = set()
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    counted = await stub.CountMembers(
                        pb.CountMembersRequest(segment_id=segments[name].id), timeout=600
                    )
                    service_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    by_hand = await connection.fetchval(sql)
                    hand_ms.append((time.perf_counter() - started) * 1000)
                    counts.add((counted.count, by_hand))
                # The service's clock and now() read a moment apart: a withinLast edge may
                # cross a customer or two between the calls.
                drift = max(abs(a - b) for a, b in counts)
                print("  " + ratio_line(
                    f"{name} ({counted.count:,} members; counts differ by at most {drift})",
                    statistics.median(service_ms), statistics.median(hand_ms), "ms",
                    "goal <= 125%", decimals=1,
                ))

            # One profile change, re-evaluated against every segment.
            rng = random.Random(3)
            js = bus.jetstream()
            processed = "SELECT count(*) FROM segmentation.processed_messages"
            base = await connection.fetchval(processed)
            chosen = rng.sample(ids, args.burst + args.singles)
            burst = [profile_event(c, 2, now, rng.uniform(0, 2000)) for c in chosen[: args.burst]]
            for message in burst:
                await js.publish(message.subject, message.event.data,
                                 headers=message.event.headers())
            started = time.perf_counter()
            while await connection.fetchval(processed) < base + args.burst:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            print(f"\nprofile changes: a burst of {args.burst:,} applied in {elapsed:.2f} s = "
                  f"{elapsed / args.burst * 1000:.2f} ms per change (read model upsert, both "
                  "segments re-evaluated for the customer, deltas, inbox; goal < 2 ms)")

            latencies: list[float] = []
            for customer in chosen[args.burst:]:
                message = profile_event(customer, 3, now, 1500.0)
                started = time.perf_counter()
                await js.publish(message.subject, message.event.data,
                                 headers=message.event.headers())
                while not await connection.fetchval(
                    "SELECT true FROM segmentation.processed_messages WHERE message_id = $1",
                    message.event.id,
                ):
                    await asyncio.sleep(0.0005)
                latencies.append((time.perf_counter() - started) * 1000)
            print(f"one change at a time, publish -> membership stored: p50 "
                  f"{percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
                  f"(includes NATS and the consumer's fetch)")

            print("\nListMembers streamed (memory must stay flat in segment size):")
            for name in ("subscribers_with_abandoned_carts", "high_value_email_engaged"):
                baseline = sampler.rss(sampler.pids["segmentation"])
                peak = baseline
                received = 0
                started = time.perf_counter()
                async for page in stub.ListMembers(
                    pb.ListMembersRequest(segment_id=segments[name].id), timeout=600
                ):
                    received += len(page.members)
                    if received % 20_000 < len(page.members):
                        peak = max(peak, sampler.rss(sampler.pids["segmentation"]))
                elapsed = time.perf_counter() - started
                peak = max(peak, sampler.rss(sampler.pids["segmentation"]))
                print(f"  {name}: {received:,} members in {elapsed:.2f} s "
                      f"({received / elapsed:,.0f}/s), service RSS {baseline / 2**20:.1f} MB -> "
                      f"{peak / 2**20:.1f} MB while streaming")
        await bus.close()
        await channel.close(None)
        await connection.close()
    print()
    print(sampler.report())


if __name__ == "__main__":
    asyncio.run(main())
