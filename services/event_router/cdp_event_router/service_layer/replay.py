"""Re-publishing stored events to one target.

Replayed copies go to `cdp.routed.<target>.<type>` with their original event id in `ce-id`
(targets apply each id once, so a target that already had an event ignores it) and a
`Nats-Msg-Id` of their own, so that JetStream's duplicate window does not swallow a
deliberate replay of a recent event. Events stream from the store in chunks: a replay of
millions of events holds one chunk in memory.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from nats.js import JetStreamContext
from opentelemetry import trace

from cdp_bus.subjects import ROUTED_PREFIX
from cdp_db import Database, TracedConnection
from cdp_errors import InvalidArgument
from cdp_event_router.adapters import event_store
from cdp_event_router.adapters.relay import headers_for
from cdp_event_router.domain.model import EventFilter
from cdp_event_router.domain.routing import RoutingTable

CHUNK = 500


class EventReplayer:
    def __init__(self, database: Database, js: JetStreamContext, routing: RoutingTable, *,
                 tracer: trace.Tracer, ack_timeout: float = 10.0) -> None:
        self._database = database
        self._js = js
        self._routing = routing
        self._tracer = tracer
        self._ack_timeout = ack_timeout

    async def replay(self, event_filter: EventFilter, target: str) -> int:
        if not target:
            raise InvalidArgument.single("target", "is required")
        if target not in self._routing.roles:
            raise InvalidArgument.single(
                "target", f"unknown target {target[:40]!r}; known: "
                + ", ".join(sorted(self._routing.roles)))
        replay_id = uuid.uuid4().hex[:12]
        sent = 0
        pending: list[asyncio.Future[Any]] = []
        async with self._database.pool.acquire() as raw:
            connection = TracedConnection(raw, self._tracer)
            async for _seq, event in event_store.stream_events(connection, event_filter):
                row = {
                    "id": event.id, "type": event.type, "source": event.source,
                    "occurred_at": event.occurred_at, "customer_id": event.customer_id,
                    "trace_headers": {},
                }
                headers = headers_for(row, message_id=f"replay:{replay_id}:{event.id}",
                                      target=target)
                headers["cdp-replay"] = replay_id
                pending.append(await self._js.publish_async(
                    f"{ROUTED_PREFIX}.{target}.{event.type}", event.payload, headers=headers))
                sent += 1
                if len(pending) >= CHUNK:
                    await self._settle(pending)
        await self._settle(pending)
        return sent

    async def _settle(self, pending: list[asyncio.Future[Any]]) -> None:
        await asyncio.gather(*(asyncio.wait_for(f, self._ack_timeout) for f in pending))
        pending.clear()
