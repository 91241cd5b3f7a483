"""The Mailchimp connector's composition root.

`serve(settings)` is what `main` runs; `build_app` wires the connector and the inbound side
from their parts, and is what tests call with overrides (in-memory stores, a fixed clock).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp_grpc import ServiceRegistration
from cdp_mailchimp_connector.adapters.mailchimp_api import MailchimpAccount, MailchimpApi
from cdp_mailchimp_connector.adapters.peers import (
    GrpcCustomerDirectory,
    GrpcEventRouter,
    GrpcProfileSink,
)
from cdp_mailchimp_connector.adapters.repository import (
    SqlFailureStore,
    SqlInboundStore,
    SqlProcessedEvents,
    SqlSegmentMap,
)
from cdp_mailchimp_connector.adapters.tables import SCHEMA
from cdp_mailchimp_connector.entrypoints.grpc_servicer import ConnectorServicer
from cdp_mailchimp_connector.entrypoints.routed_consumer import consume_routed_events
from cdp_mailchimp_connector.entrypoints.webhook_http import build_webhook_app
from cdp_mailchimp_connector.service_layer.connector import MailchimpConnector
from cdp_mailchimp_connector.service_layer.inbound import (
    ActivityPoller,
    InboundDelivery,
    WebhookReceiver,
)
from cdp_mailchimp_connector.service_layer.ports import (
    CustomerDirectory,
    EventRouter,
    FailureStore,
    InboundStore,
    ProfileSink,
    SegmentMap,
)
from cdp_mailchimp_connector.service_layer.routed_events import RoutedEventApplier
from cdp_mailchimp_connector.settings import DEFAULT_PORT, ConnectorSettings, datacenter
from cdp_resilience import CircuitBreakers, RetryPolicy
from cdp_resilience.breaker import BreakerSettings
from cdp_service import OnServing, hosting
from cdp_telemetry import Telemetry

logger = logging.getLogger(__name__)

SERVICE_NAME = "cdp-mailchimp-connector"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class ConnectorApp:
    api: MailchimpApi
    connector: MailchimpConnector
    servicer: ConnectorServicer
    receiver: WebhookReceiver
    delivery: InboundDelivery
    poller: ActivityPoller


def build_api(settings: ConnectorSettings, telemetry: Telemetry | None = None) -> MailchimpApi:
    mailchimp = settings.mailchimp
    account = MailchimpAccount(
        api_key=mailchimp.api_key.reveal(),
        server=datacenter(mailchimp),
        api_url=mailchimp.api_url,
        read_timeout=mailchimp.timeout_seconds,
    )
    return MailchimpApi(
        account,
        max_in_flight=mailchimp.max_in_flight,
        policy=RetryPolicy(
            max_attempts=mailchimp.retry_attempts,
            base_delay=mailchimp.retry_base_seconds,
            max_delay=mailchimp.retry_max_seconds,
        ),
        breakers=CircuitBreakers(
            BreakerSettings(
                failure_threshold=mailchimp.breaker_failures,
                reset_timeout=mailchimp.breaker_reset_seconds,
            )
        ),
        tracer=telemetry.tracer("cdp.mailchimp") if telemetry else None,
    )


def build_app(
    settings: ConnectorSettings,
    *,
    api: MailchimpApi,
    failures: FailureStore,
    segments: SegmentMap,
    inbound: InboundStore,
    router: EventRouter | None,
    profiles: ProfileSink | None,
) -> ConnectorApp:
    mailchimp = settings.mailchimp
    connector = MailchimpConnector(
        api,
        list_id=mailchimp.list_id,
        failures=failures,
        segments=segments,
        batch_operations_threshold=mailchimp.batch_operations_threshold,
        batch_poll_seconds=mailchimp.batch_poll_seconds,
    )
    delivery = InboundDelivery(inbound, router=router, profiles=profiles)
    receiver = WebhookReceiver(
        inbound, secret=mailchimp.webhook_secret.reveal(), on_stored=delivery.wake
    )

    async def list_id() -> str:
        return (await connector.audience()).list_id

    poller = ActivityPoller(
        api,
        inbound,
        list_id=list_id,
        interval_seconds=mailchimp.activity_interval_seconds or 900.0,
        lookback_days=mailchimp.activity_lookback_days,
        on_stored=delivery.wake,
    )
    return ConnectorApp(api, connector, ConnectorServicer(connector), receiver, delivery, poller)


async def serve(
    settings: ConnectorSettings,
    *,
    stop: asyncio.Event | None = None,
    telemetry: Telemetry | None = None,
    on_serving: OnServing | None = None,
) -> None:
    """Runs the connector until `stop` is set (SIGTERM / SIGINT by default)."""
    async with hosting(SERVICE_NAME, settings.telemetry, telemetry=telemetry, stop=stop) as host:
        database = await host.open_database(
            settings.database, schema=SCHEMA, migrations=MIGRATIONS
        )
        api = build_api(settings, host.telemetry)
        host.stack.callback(api.close)
        router: EventRouter | None = None
        profiles: ProfileSink | None = None
        if settings.event_router_addr:
            router = GrpcEventRouter(host.dial(settings.event_router_addr, settings.client))
        else:
            logger.warning("CDP_EVENT_ROUTER_ADDR unset: inbound events are kept until it is")
        if settings.profile_addr:
            profiles = GrpcProfileSink(host.dial(settings.profile_addr, settings.client))
        else:
            logger.warning("CDP_PROFILE_ADDR unset: profile fragments are kept until it is")

        inbound = SqlInboundStore(database.sessions)
        app = build_app(
            settings,
            api=api,
            failures=SqlFailureStore(database.sessions),
            segments=SqlSegmentMap(database.sessions),
            inbound=inbound,
            router=router,
            profiles=profiles,
        )
        await host.run_in_background(app.delivery.run(), name="inbound-delivery")
        if settings.mailchimp.activity_interval_seconds > 0:
            await host.run_in_background(app.poller.run(), name="activity-pull")

        # The routed-events consumer keeps its own NATS connection: the connector serves
        # (pushes, syncs, webhooks) with no NATS at all, so readiness does not depend on it.
        if settings.nats.url:
            directory: CustomerDirectory | None = None
            if settings.identity_addr:
                directory = GrpcCustomerDirectory(
                    host.dial(settings.identity_addr, settings.client)
                )
            else:
                logger.warning("CDP_IDENTITY_ADDR unset: routed events without an email are "
                               "kept as failed operations")
            applier = RoutedEventApplier(
                app.connector,
                SqlProcessedEvents(database.sessions, consumer=settings.routed_events.durable),
                directory,
                max_attempts=settings.routed_events.max_attempts,
            )
            await host.run_in_background(
                consume_routed_events(
                    settings.nats, settings.routed_events, applier, host.telemetry
                ),
                name="routed-events",
            )
        else:
            logger.warning("NATS_URL unset: events routed to the email role are not consumed")

        webhook_port = await host.serve_http(
            build_webhook_app(app.receiver),
            settings.mailchimp.webhook_host,
            settings.mailchimp.webhook_port,
        )
        logger.info(
            "mailchimp connector webhooks on %s:%d", settings.mailchimp.webhook_host, webhook_port
        )
        await host.serve(
            settings.grpc,
            ServiceRegistration(
                connector_pb2_grpc.add_ConnectorServiceServicer_to_server,
                app.servicer,
                connector_pb2.DESCRIPTOR.services_by_name["ConnectorService"].full_name,
            ),
            default_port=DEFAULT_PORT,
            on_serving=on_serving,
        )
