"""A platform connector on real gRPC that keeps static segments in memory, like Mailchimp:
what it was sent, what each segment holds, and switches to fail calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc


@dataclass
class Call:
    segment_id: str
    add: list[str]
    remove: list[str]
    full_resync: bool
    succeeded: bool


@dataclass
class FakeConnector(connector_pb2_grpc.ConnectorServiceServicer):
    calls: list[Call] = field(default_factory=list)
    # segment id -> emails the platform's segment holds.
    segments: dict[str, set[str]] = field(default_factory=dict)
    # Call numbers (1-based, over all calls) that fail as a whole, applying nothing (INTERNAL:
    # UNAVAILABLE would be retried by the channel itself).
    fail_calls: set[int] = field(default_factory=set)
    # Emails refused for good, like addresses that are not in a Mailchimp audience.
    refused: set[str] = field(default_factory=set)

    async def SyncSegmentMembership(
        self,
        request: connector_pb2.SyncSegmentMembershipRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.SyncSegmentMembershipResponse:
        add = [m.email for m in request.members_to_add]
        remove = [m.email for m in request.members_to_remove]
        failing = len(self.calls) + 1 in self.fail_calls
        self.calls.append(Call(request.segment_id, add, remove, request.full_resync, not failing))
        if failing:
            await context.abort(grpc.StatusCode.INTERNAL, "the platform answered 500")
        held = self.segments.setdefault(request.segment_id, set())
        failures = [
            connector_pb2.RecordResult(key=m.customer_id, error="not in the audience",
                                       permanent=True)
            for m in request.members_to_add if m.email in self.refused
        ]
        wanted = {e for e in add if e not in self.refused}
        if request.full_resync:
            removed = held - wanted
            held.clear()
        else:
            removed = held & set(remove)
            held.difference_update(remove)
        added = wanted - held
        held.update(wanted)
        return connector_pb2.SyncSegmentMembershipResponse(
            platform_segment_id=f"p-{request.segment_id[:8]}",
            members_added=len(added),
            members_removed=len(removed),
            failures=failures,
        )

    def successful(self) -> list[Call]:
        return [c for c in self.calls if c.succeeded]


@asynccontextmanager
async def connector_server(servicer: FakeConnector) -> AsyncIterator[str]:
    server = grpc.aio.server()
    connector_pb2_grpc.add_ConnectorServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now
