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
from opentelemetry.trace import Span, SpanKind


def propagate_context(headers: Mapping[str, str] | None) -> trace.SpanContext:
    """The span context a message's headers carry (invalid when they carry none)."""
    return trace.get_current_span(propagate.extract(dict(headers or {}))).get_span_context()


def current_trace_headers() -> dict[str, str]:
    """The active trace context as headers (`traceparent`, `tracestate`), possibly empty."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def producer_span(
    tracer: trace.Tracer, subject: str, headers: dict[str, str], *, message_id: str
) -> Iterator[Span]:
    """A PRODUCER span parented by the context in `headers`; refreshes their traceparent."""
    parent = propagate.extract(headers)
    with tracer.start_as_current_span(
        f"{subject} publish",
        context=parent,
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
