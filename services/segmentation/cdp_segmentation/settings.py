"""The segmentation service's settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from cdp_bus import NatsSettings
from cdp_connector_client import connector_addresses
from cdp_db import DatabaseSettings
from cdp_grpc import GrpcClientSettings, GrpcServerSettings
from cdp_segmentation.domain.model import FIELD_PATH
from cdp_settings import SettingsError, load_settings, setting
from cdp_settings.platforms import platforms_setting
from cdp_telemetry import TelemetrySettings

DEFAULT_PORT = 50054
# Mailchimp takes at most 500 members_to_add and 500 members_to_remove per static-segment
# call; no delta chunk the service sends is larger.
MAX_SYNC_CHUNK = 500


@dataclass(frozen=True)
class SegmentationSettings:
    grpc: GrpcServerSettings = GrpcServerSettings()
    database: DatabaseSettings = DatabaseSettings(url="")
    nats: NatsSettings = NatsSettings(url="")
    telemetry: TelemetrySettings = TelemetrySettings()
    client: GrpcClientSettings = GrpcClientSettings()
    platforms: tuple[str, ...] = platforms_setting()
    attributes_file: Path | None = setting(
        "CDP_SEGMENTATION_ATTRIBUTES_FILE",
        default=None,
        doc="the attribute schema (YAML); the packaged attributes.yaml when unset",
    )
    email_field: str = setting(
        "CDP_SEGMENTATION_EMAIL_FIELD",
        default="user.email",
        doc="profile field holding the email platforms key members by",
    )
    reevaluate_interval_seconds: float = setting(
        "CDP_SEGMENTATION_REEVALUATE_SECONDS",
        default=60.0,
        doc="how often withinLast conditions are re-evaluated as time passes",
    )
    sync_poll_seconds: float = setting(
        "CDP_SEGMENTATION_SYNC_POLL_SECONDS",
        default=2.0,
        doc="how often due syncs and realtime deltas are looked for",
    )
    sync_chunk_size: int = setting(
        "CDP_SEGMENTATION_SYNC_CHUNK",
        default=MAX_SYNC_CHUNK,
        doc="most additions and most removals per SyncSegmentMembership call (at most 500)",
    )
    sync_timeout_seconds: float = setting(
        "CDP_SEGMENTATION_SYNC_TIMEOUT_SECONDS",
        default=60.0,
        doc="deadline of one SyncSegmentMembership call",
    )
    sync_retry_base_seconds: float = setting(
        "CDP_SEGMENTATION_SYNC_RETRY_BASE_SECONDS",
        default=5.0,
        doc="wait after a failed sync; doubles with each failure in a row",
    )
    sync_retry_max_seconds: float = setting(
        "CDP_SEGMENTATION_SYNC_RETRY_MAX_SECONDS",
        default=300.0,
        doc="longest wait between attempts of a failing sync",
    )
    sync_wait_seconds: float = setting(
        "CDP_SEGMENTATION_SYNC_WAIT_SECONDS",
        default=120.0,
        doc="how long SyncSegment waits for a sync of the same segment and platform already "
        "running (at most the call's own deadline)",
    )
    max_full_resync_members: int = setting(
        "CDP_SEGMENTATION_MAX_FULL_RESYNC_MEMBERS",
        default=200_000,
        doc="largest segment a full re-sync sends (the contract carries it in one message)",
    )
    consumer_batch: int = setting(
        "CDP_SEGMENTATION_CONSUMER_BATCH",
        default=200,
        doc="profile events fetched per batch by the read-model consumer",
    )
    max_learned_fields: int = setting(
        "CDP_SEGMENTATION_MAX_LEARNED_FIELDS",
        default=5000,
        doc="undeclared field paths remembered from profiles; later new paths are not learned",
    )
    members_page_size: int = setting(
        "CDP_SEGMENTATION_MEMBERS_PAGE",
        default=1000,
        doc="members read per query while ListMembers streams",
    )
    clock_shift_file: Path | None = setting(
        "CDP_SEGMENTATION_CLOCK_SHIFT_FILE",
        default=None,
        doc="a file holding seconds to add to the clock (rehearsing the future; tests)",
    )
    # Platform -> host:port of its connector, from CDP_CONNECTOR_<PLATFORM>_ADDR, else
    # CDP_<PLATFORM>_ADDR (see load_segmentation_settings).
    connector_addresses: tuple[tuple[str, str], ...] = ()

    def connector_address(self, platform: str) -> str | None:
        return dict(self.connector_addresses).get(platform)


def check_settings(settings: SegmentationSettings) -> list[str]:
    problems = []
    if not 1 <= settings.sync_chunk_size <= MAX_SYNC_CHUNK:
        problems.append(
            f"CDP_SEGMENTATION_SYNC_CHUNK={settings.sync_chunk_size} must be 1 to {MAX_SYNC_CHUNK}"
        )
    if not FIELD_PATH.match(settings.email_field):
        problems.append(
            f"CDP_SEGMENTATION_EMAIL_FIELD={settings.email_field!r} is not a dot path of names"
        )
    for name, value in (
        ("CDP_SEGMENTATION_REEVALUATE_SECONDS", settings.reevaluate_interval_seconds),
        ("CDP_SEGMENTATION_SYNC_POLL_SECONDS", settings.sync_poll_seconds),
        ("CDP_SEGMENTATION_SYNC_TIMEOUT_SECONDS", settings.sync_timeout_seconds),
        ("CDP_SEGMENTATION_SYNC_RETRY_BASE_SECONDS", settings.sync_retry_base_seconds),
        ("CDP_SEGMENTATION_SYNC_RETRY_MAX_SECONDS", settings.sync_retry_max_seconds),
        ("CDP_SEGMENTATION_SYNC_WAIT_SECONDS", settings.sync_wait_seconds),
    ):
        if value <= 0:
            problems.append(f"{name}={value:g} must be positive")
    for name, count in (
        ("CDP_SEGMENTATION_MAX_FULL_RESYNC_MEMBERS", settings.max_full_resync_members),
        ("CDP_SEGMENTATION_CONSUMER_BATCH", settings.consumer_batch),
        ("CDP_SEGMENTATION_MAX_LEARNED_FIELDS", settings.max_learned_fields),
        ("CDP_SEGMENTATION_MEMBERS_PAGE", settings.members_page_size),
    ):
        if count < 1:
            problems.append(f"{name}={count} must be at least 1")
    return problems


def load_segmentation_settings(environ: Mapping[str, str] | None = None) -> SegmentationSettings:
    """Settings from the environment, connector addresses included; SettingsError names
    every bad variable."""
    environ = os.environ if environ is None else environ
    settings = load_settings(SegmentationSettings, environ)
    addresses, address_problems = connector_addresses(settings.platforms, environ)
    problems = check_settings(settings) + address_problems
    if problems:
        raise SettingsError(problems)
    return replace(settings, connector_addresses=addresses)
