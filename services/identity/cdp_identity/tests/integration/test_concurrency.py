"""Real concurrency against real PostgreSQL: two replicas, many overlapping writes at once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import TYPE_CHECKING

import asyncpg
import grpc
import pytest

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_embedded import to_asyncpg_dsn
from cdp_grpc import GrpcClientSettings, create_channel
from cdp_identity.bootstrap import serve
from cdp_identity.domain.identifiers import IdentityKind
from cdp_identity.settings import IdentitySettings
from cdp_telemetry import Telemetry
from cdp_testing.services import OnServing, service_running

from .conftest import request

if TYPE_CHECKING:
    from cdp.identity.v1.identity_pb2_grpc import IdentityServiceAsyncStub

EMAILS = [f"user{i}@example.com" for i in range(24)]
PHONES = [f"+1415555{i:04d}" for i in range(1000, 1024)]
DEVICES = [f"device-{i}" for i in range(24)]


@pytest.fixture
async def replicas(
    identity_settings: IdentitySettings, telemetry: Telemetry
) -> AsyncIterator[list[IdentityServiceAsyncStub]]:
    # High limits: this test is about races, not protection.
    settings = replace(identity_settings, limits={kind: 10_000 for kind in IdentityKind})
    async with AsyncExitStack() as stack:
        stubs: list[IdentityServiceAsyncStub] = []
        for _ in range(2):
            async def start(stop: asyncio.Event, on_serving: OnServing) -> None:
                await serve(settings, stop=stop, telemetry=telemetry, on_serving=on_serving)

            server = await stack.enter_async_context(service_running(start))
            channel = create_channel(server.address, GrpcClientSettings(default_timeout_seconds=60))
            stack.push_async_callback(channel.close, None)
            stubs.append(identity_pb2_grpc.IdentityServiceStub(channel))
        yield stubs


class Components:
    """Which identifiers the requests tied together: the customers there must be."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, items: list[str]) -> None:
        for other in items[1:]:
            self.parent[self.find(other)] = self.find(items[0])


async def test_overlapping_resolves_and_merges_at_once_leave_one_customer_per_person(
    replicas: list[IdentityServiceAsyncStub], identity_settings: IdentitySettings
) -> None:
    rng = random.Random(20261204)
    expected = Components()
    requests: list[list[str]] = []
    calls = []
    for n in range(300):
        chosen = rng.sample(
            [("email", rng.choice(EMAILS)), ("phone", rng.choice(PHONES)),
             ("device_id", rng.choice(DEVICES))],
            k=rng.choice((1, 1, 2, 2, 3)),
        )
        values = [value for _, value in chosen]
        expected.join(values)
        requests.append(values)
        given = dict(chosen)
        calls.append(replicas[n % 2].ResolveIdentity(request(
            email=given.get("email", ""), phone=given.get("phone", ""),
            device_id=given.get("device_id", ""),
        )))
    semaphore = asyncio.Semaphore(48)

    async def limited(
        call: Awaitable[identity_pb2.ResolveIdentityResponse],
    ) -> identity_pb2.ResolveIdentityResponse:
        async with semaphore:
            return await call

    results = await asyncio.gather(*(limited(c) for c in calls))
    an_identifier_of = {r.customer_id: values[0] for r, values in zip(results, requests,
                                                                      strict=True)}
    # Explicit merges racing with each other over the customers just made.
    customers = sorted(an_identifier_of)
    pairs = [tuple(rng.sample(customers, 2)) for _ in range(40)]
    merge_calls: list[Awaitable[identity_pb2.MergeCustomersResponse]] = [
        replicas[i % 2].MergeCustomers(
            identity_pb2.MergeCustomersRequest(customer_id=a, other_customer_id=b))
        for i, (a, b) in enumerate(pairs)
    ]
    merges = await asyncio.gather(*merge_calls, return_exceptions=True)
    for (a, b), outcome in zip(pairs, merges, strict=True):
        if isinstance(outcome, grpc.aio.AioRpcError):
            # One of them was merged away by a concurrent merge: refused, never half-done.
            assert outcome.code() == grpc.StatusCode.FAILED_PRECONDITION, outcome.details()
        else:
            expected.join([an_identifier_of[a], an_identifier_of[b]])

    dsn, kwargs = to_asyncpg_dsn(identity_settings.database.url)
    database = await asyncpg.connect(dsn, **kwargs)
    try:
        rows = await database.fetch(
            """SELECT i.value, i.customer_id::text AS customer_id, c.status
               FROM identity.identities i JOIN identity.customers c ON c.id = i.customer_id""")
        active = await database.fetchval(
            "SELECT count(*) FROM identity.customers WHERE status = 'active'")
    finally:
        await database.close()
    used = {value for values in requests for value in values}
    owner = {r["value"]: r["customer_id"] for r in rows}
    # No identifier lost or stored twice; every one owned by an active customer.
    assert sorted(owner) == sorted(used) and len(rows) == len(used)
    assert {r["status"] for r in rows} == {"active"}
    # Customers are exactly the groups the requests and successful merges tied together:
    # no duplicate customer for one person, no two people in one customer.
    groups_by_owner: dict[str, set[str]] = {}
    for value, customer in owner.items():
        groups_by_owner.setdefault(customer, set()).add(expected.find(value))
    assert all(len(groups) == 1 for groups in groups_by_owner.values())
    assert len(groups_by_owner) == len({expected.find(v) for v in used}) == active
