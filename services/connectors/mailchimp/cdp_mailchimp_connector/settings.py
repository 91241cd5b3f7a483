"""The Mailchimp connector's settings, read once from the environment."""

from __future__ import annotations

from dataclasses import dataclass

from cdp_bus import NatsSettings
from cdp_db import DatabaseSettings
from cdp_grpc import GrpcClientSettings, GrpcServerSettings
from cdp_settings import Secret, setting
from cdp_telemetry import TelemetrySettings

DEFAULT_PORT = 50061
DEFAULT_WEBHOOK_PORT = 50161


@dataclass(frozen=True)
class MailchimpSettings:
    api_key: Secret = setting(
        "MAILCHIMP_API_KEY", doc="Mailchimp API key, <key>-<datacenter> (e.g. ...-us6)"
    )
    server: str = setting(
        "MAILCHIMP_SERVER", default="", doc="datacenter (us6); taken from the key when unset"
    )
    api_url: str = setting(
        "MAILCHIMP_API_URL",
        default="",
        doc="base URL instead of https://<dc>.api.mailchimp.com/3.0, e.g. the sandbox's",
    )
    list_id: str = setting(
        "MAILCHIMP_LIST_ID", default="", doc="the audience to sync; the account's first if unset"
    )
    max_in_flight: int = setting(
        "MAILCHIMP_MAX_IN_FLIGHT",
        default=10,
        doc="simultaneous calls per account (Mailchimp allows 10)",
    )
    timeout_seconds: float = setting(
        "MAILCHIMP_TIMEOUT_SECONDS", default=120.0, doc="read timeout of one call"
    )
    retry_attempts: int = setting(
        "MAILCHIMP_RETRY_ATTEMPTS", default=6, doc="attempts per call for 429, 5xx, network errors"
    )
    retry_base_seconds: float = setting(
        "MAILCHIMP_RETRY_BASE_SECONDS", default=0.2, doc="cap of the first backoff (full jitter)"
    )
    retry_max_seconds: float = setting(
        "MAILCHIMP_RETRY_MAX_SECONDS", default=10.0, doc="largest backoff cap"
    )
    breaker_failures: int = setting(
        "MAILCHIMP_BREAKER_FAILURES", default=5, doc="consecutive failures that open the circuit"
    )
    breaker_reset_seconds: float = setting(
        "MAILCHIMP_BREAKER_RESET_SECONDS", default=30.0, doc="open time before a probe"
    )
    batch_operations_threshold: int = setting(
        "MAILCHIMP_BATCH_OPERATIONS_THRESHOLD",
        default=20000,
        doc="profiles per PushProfiles above which /batches is used instead of batch calls",
    )
    batch_poll_seconds: float = setting(
        "MAILCHIMP_BATCH_POLL_SECONDS", default=2.0, doc="how often a /batches job is polled"
    )
    webhook_host: str = setting(
        "MAILCHIMP_WEBHOOK_HOST", default="127.0.0.1", doc="address the webhook endpoint binds"
    )
    webhook_port: int = setting(
        "MAILCHIMP_WEBHOOK_PORT", default=DEFAULT_WEBHOOK_PORT, doc="port of the webhook endpoint"
    )
    webhook_secret: Secret = setting(
        "MAILCHIMP_WEBHOOK_SECRET",
        default=Secret(""),
        doc="signing secret; when set, webhooks without a valid X-Mailchimp-Signature are refused",
    )
    activity_interval_seconds: float = setting(
        "MAILCHIMP_ACTIVITY_INTERVAL_SECONDS",
        default=900.0,
        doc="how often opens and clicks are pulled; 0 turns the pull off",
    )
    activity_lookback_days: int = setting(
        "MAILCHIMP_ACTIVITY_LOOKBACK_DAYS", default=30, doc="campaigns sent this recently are read"
    )


def parse_delays(raw: str) -> tuple[float, ...]:
    """`0.5,2,10` -> (0.5, 2.0, 10.0); at least one, none negative."""
    delays = tuple(float(part) for part in raw.split(",") if part.strip())
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError("expected comma-separated seconds, at least one, none negative")
    return delays


@dataclass(frozen=True)
class RoutedEventsSettings:
    """The consumer of events the router sends to the `email` role (needs NATS_URL)."""

    durable: str = setting(
        "MAILCHIMP_EVENTS_CONSUMER", default="mailchimp-email",
        doc="durable JetStream consumer on cdp.routed.email.>, shared by every replica",
    )
    concurrency: int = setting(
        "MAILCHIMP_EVENTS_CONCURRENCY", default=10,
        doc="customers whose events are delivered at the same time",
    )
    max_buffered: int = setting(
        "MAILCHIMP_EVENTS_MAX_BUFFERED", default=2000,
        doc="routed events held unacknowledged at most (fetching pauses above it)",
    )
    max_attempts: int = setting(
        "MAILCHIMP_EVENTS_MAX_ATTEMPTS", default=10,
        doc="attempts before an event is kept as a retryable failed operation and its "
        "customer's next event goes ahead",
    )
    retry_delays: tuple[float, ...] = setting(
        "MAILCHIMP_EVENTS_RETRY_DELAYS", default=(0.5, 2.0, 10.0, 30.0, 60.0),
        doc="seconds a customer waits after its 1st, 2nd, ... failed attempt, comma-separated "
        "(the last repeats)",
        parse=parse_delays,
    )
    ack_wait_seconds: float = setting(
        "MAILCHIMP_EVENTS_ACK_WAIT_SECONDS", default=30.0,
        doc="time JetStream waits for an ack before redelivering",
    )
    reconnect_delay_seconds: float = setting(
        "MAILCHIMP_EVENTS_RECONNECT_SECONDS", default=1.0,
        doc="wait before connecting to NATS again after losing it",
    )


@dataclass(frozen=True)
class ConnectorSettings:
    grpc: GrpcServerSettings = GrpcServerSettings()
    database: DatabaseSettings = DatabaseSettings(url="")
    telemetry: TelemetrySettings = TelemetrySettings()
    client: GrpcClientSettings = GrpcClientSettings()
    mailchimp: MailchimpSettings = MailchimpSettings(api_key=Secret(""))
    nats: NatsSettings = NatsSettings(url="")
    routed_events: RoutedEventsSettings = RoutedEventsSettings()
    event_router_addr: str = setting(
        "CDP_EVENT_ROUTER_ADDR",
        default="",
        doc="event router (host:port); inbound events wait in the database until it is set",
    )
    identity_addr: str = setting(
        "CDP_IDENTITY_ADDR",
        default="",
        doc="identity service (host:port): the email of a routed event that carries none",
    )
    profile_addr: str = setting(
        "CDP_PROFILE_ADDR",
        default="",
        doc="profile service (host:port); profile fragments wait until it is set",
    )


def datacenter(settings: MailchimpSettings) -> str:
    """The datacenter: MAILCHIMP_SERVER, else the part of the key after its last '-'."""
    if settings.server:
        return settings.server
    key = settings.api_key.reveal()
    return key.rsplit("-", 1)[1] if "-" in key else "us1"
