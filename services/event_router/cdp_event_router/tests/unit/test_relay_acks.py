"""The relay marks a stored event published only when JetStream acknowledged every copy."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from nats.js import JetStreamContext
from opentelemetry import trace

from cdp_db import Database
from cdp_event_router.adapters.relay import EventRelay


class FakeJetStream:
    """publish_async as nats-py answers it: a future per message, settled by the server."""

    def __init__(self, refused: set[str], unanswered: set[str]) -> None:
        self.refused = refused
        self.unanswered = unanswered
        self.published: list[str] = []

    async def publish_async(self, subject: str, payload: bytes, *,
                            headers: dict[str, str]) -> asyncio.Future[Any]:
        self.published.append(subject)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        message_id = headers["Nats-Msg-Id"]
        if message_id in self.refused:
            future.set_exception(RuntimeError("nats: stream unavailable"))
        elif message_id not in self.unanswered:
            future.set_result(object())
        return future


def row(seq: int, targets: list[str]) -> dict[str, Any]:
    return {
        "seq": seq,
        "id": f"event-{seq}",
        "type": "order.completed",
        "source": "shopify",
        "occurred_at": datetime(2026, 12, 1, tzinfo=UTC),
        "customer_id": "",
        "trace_headers": {},
        "targets": targets,
        "payload": b"event",
    }


async def test_only_rows_whose_every_copy_was_acknowledged_are_done() -> None:
    js = FakeJetStream(refused={"event-2:crm"}, unanswered={"event-3"})
    relay = EventRelay(
        cast(Database, None), cast(JetStreamContext, js),
        tracer=trace.get_tracer(__name__), ack_timeout=0.2,
    )
    rows = [row(1, ["email", "crm"]), row(2, ["email", "crm"]), row(3, []), row(4, ["crm"])]
    done = await relay._publish(rows)
    assert done == [1, 4]
    assert js.published.count("cdp.events.order.completed") == 4
    assert js.published.count("cdp.routed.crm.order.completed") == 3
