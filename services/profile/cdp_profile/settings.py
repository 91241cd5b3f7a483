"""The profile service's settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from cdp_bus import NatsSettings
from cdp_connector_client import connector_addresses
from cdp_db import DatabaseSettings
from cdp_grpc import GrpcClientSettings, GrpcServerSettings
from cdp_settings import SettingsError, load_settings, setting
from cdp_settings.platforms import platforms_setting
from cdp_telemetry import TelemetrySettings

DEFAULT_PORT = 50052


@dataclass(frozen=True)
class ProfileSettings:
    grpc: GrpcServerSettings = GrpcServerSettings()
    database: DatabaseSettings = DatabaseSettings(url="")
    nats: NatsSettings = NatsSettings(url="")
    telemetry: TelemetrySettings = TelemetrySettings()
    client: GrpcClientSettings = GrpcClientSettings()
    platforms: tuple[str, ...] = platforms_setting()
    identity_address: str = setting(
        "CDP_IDENTITY_ADDR",
        default="127.0.0.1:50051",
        doc="the identity service, for fragments that come without a customer id",
    )
    strategies_file: Path | None = setting(
        "CDP_PROFILE_STRATEGIES_FILE",
        default=None,
        doc="conflict strategies per field (YAML); the packaged defaults when unset",
    )
    mappings_file: Path | None = setting(
        "CDP_PROFILE_MAPPINGS_FILE",
        default=None,
        doc="field mappings per (source, target) (YAML); the packaged defaults when unset",
    )
    max_attributes_bytes: int = setting(
        "CDP_PROFILE_MAX_ATTRIBUTES_BYTES",
        default=64 * 1024,
        doc="largest attribute document one fragment may carry (serialized)",
    )
    max_attributes_depth: int = setting(
        "CDP_PROFILE_MAX_ATTRIBUTES_DEPTH", default=8, doc="deepest nesting of objects and lists"
    )
    max_fields_per_fragment: int = setting(
        "CDP_PROFILE_MAX_FIELDS_PER_FRAGMENT", default=500, doc="most fields one fragment may set"
    )
    max_batch_fragments: int = setting(
        "CDP_PROFILE_MAX_BATCH_FRAGMENTS",
        default=1000,
        doc="most fragments one IngestProfileFragments call may carry",
    )
    max_clock_skew_seconds: float = setting(
        "CDP_PROFILE_MAX_CLOCK_SKEW_SECONDS",
        default=300.0,
        doc="how far in the future an observed time may be (later ones would win forever)",
    )
    sync_target_timeout_seconds: float = setting(
        "CDP_PROFILE_SYNC_TARGET_TIMEOUT_SECONDS",
        default=10.0,
        doc="deadline per target platform of one SyncProfile",
    )
    # Platform -> host:port of its connector, from CDP_CONNECTOR_<PLATFORM>_ADDR, else
    # CDP_<PLATFORM>_ADDR (see load_profile_settings).
    connector_addresses: tuple[tuple[str, str], ...] = ()

    def connector_address(self, platform: str) -> str | None:
        return dict(self.connector_addresses).get(platform)


def load_profile_settings(environ: Mapping[str, str] | None = None) -> ProfileSettings:
    """Settings from the environment, connector addresses included; SettingsError names
    every bad variable."""
    environ = os.environ if environ is None else environ
    settings = load_settings(ProfileSettings, environ)
    addresses, problems = connector_addresses(settings.platforms, environ)
    if problems:
        raise SettingsError(problems)
    return replace(settings, connector_addresses=addresses)
