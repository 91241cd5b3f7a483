from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from cdp_telemetry import TelemetrySettings, configure_telemetry
from cdp_telemetry.logs import JsonFormatter, RedactingFilter


def test_exported_spans_never_carry_emails_or_phones() -> None:
    exporter = InMemorySpanExporter()
    telemetry = configure_telemetry("test-svc", TelemetrySettings(), exporters=[exporter])
    tracer = telemetry.tracer("test")
    with tracer.start_as_current_span("lookup") as span:
        span.set_attribute("db.statement", "SELECT 1")
        span.set_attribute("note", "looked up ada@example.com and +447700900123")
        span.add_event("exception", {"exception.message": "Key (value)=(bob@example.org) exists"})
        span.set_status(Status(StatusCode.ERROR, "duplicate bob@example.org"))
    (finished,) = exporter.get_finished_spans()
    dumped = json.dumps(
        {
            "attributes": dict(finished.attributes or {}),
            "events": [dict(e.attributes or {}) for e in finished.events],
            "status": finished.status.description,
        }
    )
    assert "example.com" not in dumped and "example.org" not in dumped
    assert "7700900123" not in dumped
    assert finished.attributes is not None and finished.attributes["db.statement"] == "SELECT 1"
    assert finished.resource.attributes["service.name"] == "test-svc"
    telemetry.shutdown()


def test_json_logs_carry_the_trace_id_and_no_personal_data() -> None:
    exporter = InMemorySpanExporter()
    telemetry = configure_telemetry("test-svc", TelemetrySettings(), exporters=[exporter])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter("test-svc"))
    log = logging.getLogger("cdp.test.logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        with telemetry.tracer("t").start_as_current_span("work") as span:
            log.info(
                "resolved %s",
                "ada@example.com",
                extra={"customer_id": "c-1", "phone": "+447700900123"},
            )
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        log.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["trace_id"] == trace_id
    assert entry["message"] == "resolved <email>"
    assert entry["customer_id"] == "c-1"
    assert entry["phone"] == "<phone>"
    assert entry["service"] == "test-svc"
