"""In-memory stand-ins for the connector's stores and peers, for handler tests without I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cdp_mailchimp_connector.domain.inbound import Fragment, UnifiedEvent
from cdp_mailchimp_connector.service_layer.ports import InboundItem


class FakeInboundStore:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.cursors: dict[str, str] = {}

    async def add(self, items: Sequence[tuple[str, str, dict[str, Any]]], now: datetime) -> int:
        new = 0
        for item_id, kind, body in items:
            if item_id not in self.items:
                self.items[item_id] = {"kind": kind, "body": body, "attempts": 0, "due": now,
                                       "delivered": None}
                new += 1
        return new

    async def due(self, now: datetime, limit: int) -> list[InboundItem]:
        return [InboundItem(i, v["kind"], v["body"], v["attempts"])
                for i, v in self.items.items()
                if v["delivered"] is None and v["due"] <= now][:limit]

    async def delivered(self, ids: Sequence[str], now: datetime) -> None:
        for item_id in ids:
            self.items[item_id]["delivered"] = now

    async def postpone(self, ids: Sequence[str], until: datetime) -> None:
        for item_id in ids:
            self.items[item_id]["attempts"] += 1
            self.items[item_id]["due"] = until

    async def pending(self) -> int:
        return sum(1 for v in self.items.values() if v["delivered"] is None)

    async def cursor(self, name: str) -> str | None:
        return self.cursors.get(name)

    async def set_cursor(self, name: str, value: str) -> None:
        self.cursors[name] = value


class FlakyRouter:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[UnifiedEvent] = []

    async def publish(self, events: Sequence[UnifiedEvent]) -> list[bool]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("router down")
        self.received.extend(events)
        return [True] * len(events)


class RecordingProfiles:
    def __init__(self) -> None:
        self.received: list[Fragment] = []

    async def ingest(self, fragments: Sequence[Fragment]) -> list[bool]:
        self.received.extend(fragments)
        return [True] * len(fragments)
