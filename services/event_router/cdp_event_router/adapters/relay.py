"""Publishing stored events to JetStream: the event store is the router's outbox.

Each stored event goes out on `cdp.events.<type>` (everyone's broadcast) and on
`cdp.routed.<target>.<type>` for each target it was routed to, as CloudEvents with
`Nats-Msg-Id` = event id (broadcast) or `<event id>:<target>` (routed), so JetStream drops
copies a relay re-sends after a crash. Rows are published in acceptance order and marked
published only once JetStream acknowledged every copy.

Real-time rows go out as soon as they are committed; batched rows wait until enough are
pending or the oldest has waited long enough.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from opentelemetry import trace

from cdp_bus.envelope import MSG_ID_HEADER, PROTOBUF, SPEC_VERSION
from cdp_bus.outbox import acknowledged_seqs
from cdp_bus.subjects import EVENTS_PREFIX, ROUTED_PREFIX
from cdp_bus.tracing import producer_span
from cdp_db import Database, TracedConnection, driver_connection
from cdp_event_router.adapters import event_store
from cdp_event_router.domain.model import Lane

logger = logging.getLogger(__name__)

EVENT_SCHEMA = "cdp.events.v1.Event"


def is_sampled(traceparent: str) -> bool:
    """Whether a W3C traceparent's flags mark the trace sampled (bit 0 of the last field)."""
    flags = traceparent.rsplit("-", 1)[-1] if traceparent.count("-") == 3 else ""
    try:
        return bool(int(flags, 16) & 1)
    except ValueError:
        return False


def headers_for(row: Any, *, message_id: str, target: str = "") -> dict[str, str]:
    trace_headers = row["trace_headers"]
    if isinstance(trace_headers, str):
        trace_headers = json.loads(trace_headers)
    headers = {
        "ce-specversion": SPEC_VERSION,
        "ce-id": row["id"],
        "ce-type": row["type"],
        "ce-source": f"/cdp/sources/{row['source']}",
        "ce-time": row["occurred_at"].isoformat(),
        "ce-dataschema": EVENT_SCHEMA,
        "content-type": PROTOBUF,
        MSG_ID_HEADER: message_id,
        **trace_headers,
    }
    if row["customer_id"]:
        headers["ce-subject"] = row["customer_id"]
    if target:
        headers["cdp-target"] = target
    return headers


class EventRelay:
    def __init__(
        self,
        database: Database,
        js: JetStreamContext,
        *,
        tracer: trace.Tracer,
        chunk: int = 1000,
        batch_size: int = 500,
        batch_max_delay: float = 1.0,
        poll_interval: float = 1.0,
        ack_timeout: float = 10.0,
    ) -> None:
        self._database = database
        self._js = js
        self._tracer = tracer
        self._chunk = chunk
        self._batch_size = batch_size
        self._batch_max_delay = batch_max_delay
        self._poll_interval = poll_interval
        self._ack_timeout = ack_timeout
        self._wake = asyncio.Event()
        self._pending_batched = 0
        self._last_batch = time.monotonic()
        self.published_total = 0

    def notify(self, realtime: int, batched: int) -> None:
        """Called after a commit: how many rows of each lane it stored."""
        self._pending_batched += batched
        if realtime or self._pending_batched >= self._batch_size:
            self._wake.set()

    def _batch_due(self) -> bool:
        return (self._pending_batched >= self._batch_size
                or time.monotonic() - self._last_batch >= self._batch_max_delay)

    async def run(self) -> None:
        while True:
            lanes = [Lane.REALTIME]
            if self._batch_due():
                lanes.append(Lane.BATCHED)
            try:
                moved = await self.relay_once(lanes)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS or the database down: rows stay, retry
                logger.warning("event relay could not publish, will retry: %s", error)
                moved = 0
            if Lane.BATCHED in lanes and moved < self._chunk:
                self._pending_batched = 0
                self._last_batch = time.monotonic()
            if moved < self._chunk:
                timeout = min(self._poll_interval, max(
                    0.01, self._batch_max_delay - (time.monotonic() - self._last_batch)))
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def flush(self, *, timeout: float = 10.0) -> None:
        """Publishes everything committed, both lanes, for a clean shutdown."""
        try:
            async with asyncio.timeout(timeout):
                while await self.relay_once([Lane.REALTIME, Lane.BATCHED]) > 0:
                    pass
        except Exception as error:
            logger.warning("events not all published at shutdown, kept for next start: %s",
                           error)

    async def relay_once(self, lanes: Sequence[Lane]) -> int:
        async with self._database.sessions() as session, session.begin():
            connection = TracedConnection(await driver_connection(session), self._tracer)
            rows = await event_store.claim_unpublished(connection, lanes, self._chunk)
            if not rows:
                return 0
            done = await self._publish(rows)
            if done:
                await event_store.mark_published(connection, done, datetime.now(UTC))
        self.published_total += len(done)
        return len(done)

    async def _publish(self, rows: Sequence[Any]) -> list[int]:
        pending: list[tuple[int, list[asyncio.Future[Any]]]] = []
        for row in rows:
            futures: list[asyncio.Future[Any]] = []
            headers = headers_for(row, message_id=row["id"])
            sampled = is_sampled(headers.get("traceparent", ""))
            payload = bytes(row["payload"])
            subjects = [(f"{EVENTS_PREFIX}.{row['type']}", headers)]
            for target in row["targets"]:
                subjects.append((
                    f"{ROUTED_PREFIX}.{target}.{row['type']}",
                    headers_for(row, message_id=f"{row['id']}:{target}", target=target),
                ))
            for subject, message_headers in subjects:
                if sampled:
                    with producer_span(self._tracer, subject, message_headers,
                                       message_id=message_headers[MSG_ID_HEADER]):
                        futures.append(await self._js.publish_async(
                            subject, payload, headers=message_headers))
                else:
                    futures.append(await self._js.publish_async(
                        subject, payload, headers=message_headers))
            pending.append((row["seq"], futures))
        # A row is done once JetStream acknowledged every copy of it.
        copies = [(seq, future) for seq, futures in pending for future in futures]
        acknowledged = Counter(await acknowledged_seqs(copies, timeout=self._ack_timeout))
        return [seq for seq, futures in pending if acknowledged[seq] == len(futures)]
