"""The tracer provider, span redaction and the instrumentation of gRPC and SQLAlchemy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from opentelemetry.instrumentation.grpc import filters as grpc_filters
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

from cdp_settings import setting
from cdp_telemetry.pii import redact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TelemetrySettings:
    otlp_endpoint: str = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        default="",
        doc="OTLP/gRPC collector, e.g. http://localhost:4317 (Jaeger); no export when unset",
    )
    environment: str = setting("CDP_ENVIRONMENT", default="local", doc="deployment.environment")
    log_level: str = setting("CDP_LOG_LEVEL", default="INFO")
    log_format: str = setting("CDP_LOG_FORMAT", default="json", doc="json or text")


def _redact_value(value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return [redact(str(item)) for item in value]
    return value


def _redact_attributes(attributes: Any) -> dict[str, AttributeValue]:
    return {key: _redact_value(value) for key, value in (attributes or {}).items()}


def redacted_copy(span: ReadableSpan) -> ReadableSpan:
    """`span` with every string attribute, event attribute and status message redacted."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    events = [
        Event(event.name, _redact_attributes(event.attributes), event.timestamp)
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redact_attributes(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanProcessor(SpanProcessor):
    """Hands the wrapped processor a redacted copy of every finished span.

    Redaction sits in front of every exporter, so neither the collector nor a test's
    in-memory exporter can see an email or a phone number that slipped into a span.
    """

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(redacted_copy(span))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


# Health probes arrive every few seconds from every orchestrator; tracing them would bury
# the real traffic. Reflection is tooling traffic (grpcurl), not part of any flow.
_UNTRACED_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)


def _traced_call_filter() -> Any:
    return grpc_filters.negate(
        grpc_filters.any_of(*(grpc_filters.service_name(name) for name in _UNTRACED_SERVICES))
    )


class Telemetry:
    """One service's tracing: provider, tracers and the instrumentation hooks.

    Built by `configure_telemetry`; nothing here touches OpenTelemetry's global state except
    `install_globally`, which a service's `main` calls once. Tests build as many as they like.
    """

    def __init__(self, service_name: str, provider: TracerProvider) -> None:
        self.service_name = service_name
        self.provider = provider

    def tracer(self, name: str) -> trace.Tracer:
        return self.provider.get_tracer(name)

    def server_interceptor(self) -> grpc.aio.ServerInterceptor:
        interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(
            tracer_provider=self.provider, filter_=_traced_call_filter()
        )
        return interceptor

    def client_interceptors(self) -> Sequence[grpc.aio.ClientInterceptor]:
        interceptors: Sequence[grpc.aio.ClientInterceptor] = aio_client_interceptors(
            tracer_provider=self.provider, filter_=_traced_call_filter()
        )
        return interceptors

    def instrument_engine(self, engine: Any) -> None:
        """Adds SQL spans to a SQLAlchemy AsyncEngine (or Engine)."""
        # SQLAlchemyInstrumentor is a process-wide singleton that instruments only the first
        # engine it is given; EngineTracer is the per-engine part it delegates to, so every
        # engine (several per test process) gets spans from its own service's provider.
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

        sync_engine = getattr(engine, "sync_engine", engine)
        usage = NoOpMeterProvider().get_meter(__name__).create_up_down_counter("db.connections")
        EngineTracer(self.tracer("cdp.sql"), sync_engine, usage)

    def install_globally(self) -> None:
        """Makes this provider OpenTelemetry's global one (once per process, in `main`)."""
        trace.set_tracer_provider(self.provider)

    def force_flush(self) -> None:
        self.provider.force_flush()

    def shutdown(self) -> None:
        """Flushes and stops exporting. Safe to call more than once."""
        self.provider.shutdown()


def configure_telemetry(
    service_name: str,
    settings: TelemetrySettings,
    *,
    exporters: Sequence[SpanExporter] = (),
) -> Telemetry:
    """Builds a service's tracer provider.

    Args:
        service_name: `service.name` of every span, e.g. "cdp-identity".
        settings: the OTLP endpoint (no export when empty) and environment.
        exporters: extra exporters, exported synchronously (tests pass an in-memory one).
    """
    resource = Resource.create(
        {"service.name": service_name, "deployment.environment": settings.environment}
    )
    provider = TracerProvider(resource=resource)
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        otlp = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint, insecure=settings.otlp_endpoint.startswith("http://")
        )
        provider.add_span_processor(RedactingSpanProcessor(BatchSpanProcessor(otlp)))
    for exporter in exporters:
        provider.add_span_processor(RedactingSpanProcessor(SimpleSpanProcessor(exporter)))
    return Telemetry(service_name, provider)
