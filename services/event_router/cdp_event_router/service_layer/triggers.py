"""Running triggers: events in, profile attributes out, through the profile service.

Fed by the router's own durable consumer of `cdp.events.<type>` for the trigger types. For
each batch of delivered events the affected customers' aggregates are recomputed from the
event store in one query per trigger and sent as profile fragments in one call. A failure
(profile down) leaves the batch unacknowledged and it is redelivered; recomputing gives the
same values, so redelivery is harmless.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from opentelemetry import trace

from cdp_db import Database, TracedConnection
from cdp_event_router.adapters import event_store
from cdp_event_router.adapters.peers import Fragment
from cdp_event_router.domain.triggers import TriggerSet

logger = logging.getLogger(__name__)


class FragmentSink(Protocol):
    async def ingest(self, fragments: Sequence[Fragment]) -> list[str]: ...


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "a.c": 2} -> {"a": {"b": 1, "c": 2}}; later paths refine earlier ones."""
    document: dict[str, Any] = {}
    for path, value in flat.items():
        parts = path.split(".")
        node = document
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return document


class TriggerRunner:
    def __init__(self, database: Database, profile: FragmentSink, triggers: TriggerSet, *,
                 tracer: trace.Tracer) -> None:
        self._database = database
        self._profile = profile
        self._triggers = triggers
        self._tracer = tracer

    async def run(self, events: Sequence[tuple[str, str]]) -> int:
        """`events` are (type, customer id) pairs; returns how many fragments were sent."""
        customers_by_trigger: dict[str, set[str]] = defaultdict(set)
        for event_type, customer in events:
            if not customer:
                continue
            for trigger in self._triggers.for_type(event_type):
                customers_by_trigger[trigger.name].add(customer)
        fragments: list[Fragment] = []
        async with self._database.pool.acquire() as raw:
            connection = TracedConnection(raw, self._tracer)
            for trigger in self._triggers.triggers:
                customers = customers_by_trigger.get(trigger.name)
                if not customers:
                    continue
                computed = await event_store.aggregate(
                    connection, sorted(customers), trigger.event_types, trigger.projections
                )
                for customer, (values, newest, source) in computed.items():
                    fragments.append(Fragment(customer, source, _nest(values), newest))
        if fragments:
            refused = await self._profile.ingest(fragments)
            for message in refused:
                # A refused projection will be refused again on redelivery; log and move on.
                logger.warning("profile refused a trigger fragment: %s", message)
        return len(fragments)
