"""OpenTelemetry for the suite: tracing, structured logs and keeping PII out of both."""

from cdp_telemetry.logs import configure_logging
from cdp_telemetry.pii import fingerprint, redact
from cdp_telemetry.tracing import (
    RedactingSpanProcessor,
    Telemetry,
    TelemetrySettings,
    configure_telemetry,
)

__all__ = [
    "RedactingSpanProcessor",
    "Telemetry",
    "TelemetrySettings",
    "configure_logging",
    "configure_telemetry",
    "fingerprint",
    "redact",
]
