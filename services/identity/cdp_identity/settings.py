"""The identity service's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from cdp_bus import NatsSettings
from cdp_db import DatabaseSettings
from cdp_grpc import GrpcServerSettings
from cdp_settings import setting
from cdp_telemetry import TelemetrySettings

DEFAULT_PORT = 50051
KNOWN_PLATFORMS = (
    "mailchimp",
    "crm",
    "salesforce",
    "shopify",
    "ecommerce",
    "support",
    "analytics",
    "web",
    "mobile",
    "advertising",
    "personalization",
)


@dataclass(frozen=True)
class IdentitySettings:
    grpc: GrpcServerSettings = GrpcServerSettings()
    database: DatabaseSettings = DatabaseSettings(url="")
    nats: NatsSettings = NatsSettings(url="")
    telemetry: TelemetrySettings = TelemetrySettings()
    default_region: str = setting(
        "CDP_IDENTITY_DEFAULT_REGION",
        default="US",
        doc="region (ISO 3166 alpha-2) for phone numbers given without a country code",
    )
    platforms: tuple[str, ...] = setting(
        "CDP_PLATFORMS", default=KNOWN_PLATFORMS, doc="platform names the suite accepts"
    )
