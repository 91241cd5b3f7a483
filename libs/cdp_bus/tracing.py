"""W3C trace context across NATS, in the way the aio-pika instrumentation does it.

nats-py has no OpenTelemetry instrumentation, so the bus owns this: a PRODUCER span around
each publish with `traceparent` injected into the message headers, and a CONSUMER span
around each handled message, parented by the context extracted from its headers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind


def propagate_context(headers: Mapping[str, str] | None) -> trace.SpanContext:
    """The span context a message's headers carry (invalid when they carry none)."""
    return trace.get_current_span(propagate.extract(dict(headers or {}))).get_span_context()


def current_trace_headers() -> dict[str, str]:
    """The active trace context as headers (`traceparent`, `tracestate`), possibly empty."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


class TraceParents:
    """The contexts that message headers carry, each distinct trace context extracted once.

    A relay batch holds runs of messages written by one request, which carry the same trace
    headers; extracting them again for every message was a good part of a PRODUCER span's
    cost. Messages are told apart by the headers the global propagator reads (its `fields`),
    as they are when the parents are looked up.
    """

    def __init__(self) -> None:
        self._fields = sorted(propagate.get_global_textmap().fields)
        self._parents: dict[tuple[str | None, ...], Context] = {}

    def of(self, headers: Mapping[str, str]) -> Context:
        """The context `headers` carry, as `propagate.extract` gives it."""
        key = tuple(headers.get(name) for name in self._fields)
        parent = self._parents.get(key)
        if parent is None:
            parent = self._parents[key] = propagate.extract(dict(headers))
        return parent


@contextmanager
def producer_span(
    tracer: trace.Tracer,
    subject: str,
    headers: dict[str, str],
    *,
    message_id: str,
    parent: Context | None = None,
) -> Iterator[Span]:
    """A PRODUCER span parented by `parent`, by default the context in `headers`; refreshes
    their traceparent."""
    with tracer.start_as_current_span(
        f"{subject} publish",
        context=propagate.extract(headers) if parent is None else parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.destination.name": subject,
            "messaging.message.id": message_id,
            "messaging.operation.type": "publish",
        },
    ) as span:
        propagate.inject(headers)
        yield span


@contextmanager
def consumer_span(
    tracer: trace.Tracer,
    subject: str,
    headers: Mapping[str, str] | None,
    *,
    message_id: str,
    consumer: str,
) -> Iterator[Span]:
    """A CONSUMER span continuing the trace the message carries; attached for the block."""
    parent = propagate.extract(dict(headers or {}))
    token = otel_context.attach(parent)
    try:
        with tracer.start_as_current_span(
            f"{subject} process",
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": subject,
                "messaging.message.id": message_id,
                "messaging.consumer.group.name": consumer,
                "messaging.operation.type": "process",
            },
        ) as span:
            yield span
    finally:
        otel_context.detach(token)
