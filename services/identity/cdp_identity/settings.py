"""The identity service's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from cdp_bus import NatsSettings
from cdp_db import DatabaseSettings
from cdp_grpc import GrpcServerSettings
from cdp_identity.domain.identifiers import IdentityKind
from cdp_settings import Secret, setting
from cdp_settings.platforms import platforms_setting
from cdp_telemetry import TelemetrySettings

DEFAULT_PORT = 50051


def parse_limits(raw: str) -> dict[IdentityKind, int]:
    """`email=3,phone=2` -> {EMAIL: 3, PHONE: 2}."""
    limits: dict[IdentityKind, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            kind = IdentityKind(name.strip())
        except ValueError:
            known = ", ".join(k.value for k in IdentityKind)
            raise ValueError(f"unknown identity kind {name.strip()!r} (known: {known})") from None
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(f"{name.strip()} needs a positive count, as in {kind.value}=5")
        limits[kind] = int(value)
    return limits


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
    platforms: tuple[str, ...] = platforms_setting()
    match_threshold: float = setting(
        "CDP_IDENTITY_MATCH_THRESHOLD", default=0.85,
        doc="confidence at or above which a probabilistic match is accepted",
    )
    match_prior: float = setting(
        "CDP_IDENTITY_MATCH_PRIOR", default=1e-4,
        doc="prior probability that a blocking candidate is the same person",
    )
    max_candidates: int = setting(
        "CDP_IDENTITY_MAX_CANDIDATES", default=50, doc="candidates scored per probabilistic match"
    )
    limits: dict[IdentityKind, int] | None = setting(
        "CDP_IDENTITY_LIMITS", default=None, parse=parse_limits,
        doc="per-customer identity limits overriding the defaults, e.g. email=3,phone=2",
    )
    max_merges: int = setting(
        "CDP_IDENTITY_MAX_MERGES", default=100, doc="customers one customer may absorb"
    )
    blocked_values: tuple[str, ...] = setting(
        "CDP_IDENTITY_BLOCKED_VALUES", default=(),
        doc="placeholder values that never match, added to the built-in list",
    )
    verify_granularity_seconds: float = setting(
        "CDP_IDENTITY_VERIFY_GRANULARITY_SECONDS", default=3600.0,
        doc="how stale last_verified_at may get before a resolve rewrites it",
    )
    suppression_key: Secret = setting(
        "CDP_IDENTITY_SUPPRESSION_KEY", default=Secret("cdp-local-suppression-key"),
        doc="HMAC key of forgotten-identifier digests; set your own in deployment, never rotate",
    )
