"""The event router's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cdp_bus import NatsSettings
from cdp_db import DatabaseSettings
from cdp_grpc import GrpcClientSettings, GrpcServerSettings
from cdp_settings import Secret, setting
from cdp_settings.platforms import platforms_setting
from cdp_telemetry import TelemetrySettings

DEFAULT_PORT = 50053
DEFAULT_HTTP_PORT = 50153


def parse_write_keys(raw: str) -> dict[str, str]:
    """`key1=web,key2=mobile` -> {"key1": "web", "key2": "mobile"}."""
    keys: dict[str, str] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        key, sep, source = part.strip().partition("=")
        if not sep or not key or not source:
            raise ValueError("each entry must be WRITE_KEY=SOURCE")
        keys[key] = source.strip().lower()
    return keys


@dataclass(frozen=True)
class EventRouterSettings:
    grpc: GrpcServerSettings = GrpcServerSettings()
    clients: GrpcClientSettings = GrpcClientSettings()
    database: DatabaseSettings = DatabaseSettings(url="")
    nats: NatsSettings = NatsSettings(url="")
    telemetry: TelemetrySettings = TelemetrySettings()
    http_host: str = setting("CDP_EVENTS_HTTP_HOST", default="127.0.0.1",
                             doc="address of the Segment-compatible HTTP tracking API")
    http_port: int = setting("CDP_EVENTS_HTTP_PORT", default=DEFAULT_HTTP_PORT,
                             doc="port of the HTTP tracking API")
    write_keys: Secret = setting(
        "CDP_EVENTS_WRITE_KEYS", default=Secret("cdp-local-write-key=web"),
        doc="WRITE_KEY=SOURCE pairs for the HTTP API; the default serves only a local run",
    )
    identity_addr: str = setting("CDP_IDENTITY_ADDR", default="127.0.0.1:50051")
    profile_addr: str = setting("CDP_PROFILE_ADDR", default="127.0.0.1:50052")
    sources: tuple[str, ...] = platforms_setting()
    routing_file: Path | None = setting("CDP_EVENTS_ROUTING_FILE", default=None,
                                        doc="routing rules; the built-in table when unset")
    triggers_file: Path | None = setting("CDP_EVENTS_TRIGGERS_FILE", default=None,
                                         doc="triggers; the built-in ones when unset")
    tracking_plan_file: Path | None = setting("CDP_EVENTS_TRACKING_PLAN_FILE", default=None,
                                              doc="JSON Schemas per event type (optional)")
    quarantine_invalid: bool = setting(
        "CDP_EVENTS_QUARANTINE_INVALID", default=False,
        doc="keep invalid events for review (ListFailedEvents) instead of only rejecting them",
    )
    batch_size: int = setting("CDP_EVENTS_BATCH_SIZE", default=500,
                              doc="batched events are published once this many are pending")
    batch_max_delay_seconds: float = setting(
        "CDP_EVENTS_BATCH_MAX_DELAY_SECONDS", default=1.0,
        doc="... or once the oldest has waited this long",
    )
    triggers_enabled: bool = setting("CDP_EVENTS_TRIGGERS", default=True,
                                     doc="run triggers (needs the profile service)")
