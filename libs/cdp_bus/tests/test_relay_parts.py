from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from cdp_bus.outbox import acknowledged_seqs
from cdp_bus.tracing import TraceParents


def headers_of(trace_id: int, span_id: int, *, baggage_value: str | None = None) -> dict[str, str]:
    context = trace.set_span_in_context(
        NonRecordingSpan(
            SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))
        )
    )
    if baggage_value is not None:
        context = baggage.set_baggage("tenant", baggage_value, context)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def parent_ids(context: Context) -> tuple[int, int]:
    span_context = trace.get_current_span(context).get_span_context()
    return span_context.trace_id, span_context.span_id


def test_trace_parents_gives_what_extract_gives_for_each_distinct_trace_context() -> None:
    parents = TraceParents()
    first, second = headers_of(1, 10), headers_of(2, 20)
    for headers in (first, second, dict(first), second):
        assert parent_ids(parents.of(headers)) == parent_ids(propagate.extract(headers))
    assert parent_ids(parents.of(first)) == (1, 10)
    assert parent_ids(parents.of(second)) == (2, 20)


def test_trace_parents_tells_apart_messages_differing_only_in_baggage() -> None:
    parents = TraceParents()
    gold = headers_of(1, 10, baggage_value="gold")
    silver = headers_of(1, 10, baggage_value="silver")
    assert baggage.get_baggage("tenant", parents.of(gold)) == "gold"
    assert baggage.get_baggage("tenant", parents.of(silver)) == "silver"


def test_trace_parents_ignores_headers_the_propagator_does_not_read() -> None:
    parents = TraceParents()
    headers = headers_of(1, 10)
    first = parents.of({**headers, "Nats-Msg-Id": "a"})
    assert parents.of({**headers, "Nats-Msg-Id": "b"}) is first


def test_trace_parents_without_trace_headers_gives_no_parent_span() -> None:
    assert not trace.get_current_span(TraceParents().of({})).get_span_context().is_valid


async def test_acknowledged_seqs_keeps_acked_rows_in_order_and_drops_failed_ones() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(4)]
    futures[0].set_result("ack")
    futures[1].set_exception(RuntimeError("no responders"))
    futures[2].cancel()
    futures[3].set_result("ack")
    pending = list(zip((7, 8, 9, 10), futures, strict=True))
    assert await acknowledged_seqs(pending, timeout=5) == [7, 10]


async def test_acknowledged_seqs_waits_for_acks_arriving_later() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(2)]
    loop.call_soon(futures[1].set_result, "ack")
    loop.call_soon(futures[0].set_result, "ack")
    assert await acknowledged_seqs(list(zip((1, 2), futures, strict=True)), timeout=5) == [1, 2]


async def test_acknowledged_seqs_cancels_acks_missing_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[Any] = loop.create_future()
    acked.set_result("ack")
    missing: asyncio.Future[Any] = loop.create_future()
    assert await acknowledged_seqs([(1, acked), (2, missing)], timeout=0.01) == [1]
    assert missing.cancelled()


async def test_acknowledged_seqs_of_nothing_is_empty() -> None:
    assert await acknowledged_seqs([], timeout=5) == []


async def test_cancelled_wait_for_acks_cancels_the_acks() -> None:
    loop = asyncio.get_running_loop()
    missing: asyncio.Future[Any] = loop.create_future()
    # The outer deadline cancels the relay's own (longer) wait, as a stopping relay does.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(acknowledged_seqs([(1, missing)], timeout=60), timeout=0.05)
    assert missing.cancelled()
