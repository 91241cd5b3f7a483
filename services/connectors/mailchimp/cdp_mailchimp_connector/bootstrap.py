"""The Mailchimp connector's composition root.

`serve(settings)` is what `main` runs; `build_app` wires the connector and the inbound side
from their parts, and is what tests call with overrides (in-memory stores, a fixed clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp_db import Database, apply_migrations, create_database_engine
from cdp_grpc import (
    GrpcServer,
    ServiceRegistration,
    background,
    create_channel,
    serving,
    stop_on_signals,
)
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
from cdp_telemetry import Telemetry, configure_telemetry

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
    on_serving: Callable[[GrpcServer], Awaitable[None]] | None = None,
) -> None:
    """Runs the connector until `stop` is set (SIGTERM / SIGINT by default)."""
    stop = stop or stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        if telemetry is None:
            telemetry = configure_telemetry(SERVICE_NAME, settings.telemetry)
            stack.callback(telemetry.shutdown)
        engine = create_database_engine(settings.database, application_name=SERVICE_NAME)
        telemetry.instrument_engine(engine)
        database = Database(engine)
        stack.push_async_callback(database.dispose)
        await apply_migrations(engine, schema=SCHEMA, migrations_dir=MIGRATIONS)

        api = build_api(settings, telemetry)
        stack.callback(api.close)
        router: EventRouter | None = None
        profiles: ProfileSink | None = None
        if settings.event_router_addr:
            channel = create_channel(settings.event_router_addr, settings.client,
                                     telemetry=telemetry)
            stack.push_async_callback(channel.close, None)
            router = GrpcEventRouter(channel)
        else:
            logger.warning("CDP_EVENT_ROUTER_ADDR unset: inbound events are kept until it is")
        if settings.profile_addr:
            channel = create_channel(settings.profile_addr, settings.client, telemetry=telemetry)
            stack.push_async_callback(channel.close, None)
            profiles = GrpcProfileSink(channel)
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
        await stack.enter_async_context(background(app.delivery.run(), name="inbound-delivery"))
        if settings.mailchimp.activity_interval_seconds > 0:
            await stack.enter_async_context(background(app.poller.run(), name="activity-pull"))

        if settings.nats.url:
            directory: CustomerDirectory | None = None
            if settings.identity_addr:
                channel = create_channel(settings.identity_addr, settings.client,
                                         telemetry=telemetry)
                stack.push_async_callback(channel.close, None)
                directory = GrpcCustomerDirectory(channel)
            else:
                logger.warning("CDP_IDENTITY_ADDR unset: routed events without an email are "
                               "kept as failed operations")
            applier = RoutedEventApplier(
                app.connector,
                SqlProcessedEvents(database.sessions, consumer=settings.routed_events.durable),
                directory,
                max_attempts=settings.routed_events.max_attempts,
            )
            await stack.enter_async_context(background(
                consume_routed_events(settings.nats, settings.routed_events, applier, telemetry),
                name="routed-events",
            ))
        else:
            logger.warning("NATS_URL unset: events routed to the email role are not consumed")

        runner = web.AppRunner(build_webhook_app(app.receiver), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.mailchimp.webhook_host, settings.mailchimp.webhook_port)
        await site.start()

        server = GrpcServer(
            settings.grpc,
            [
                ServiceRegistration(
                    connector_pb2_grpc.add_ConnectorServiceServicer_to_server,
                    app.servicer,
                    connector_pb2.DESCRIPTOR.services_by_name["ConnectorService"].full_name,
                )
            ],
            telemetry=telemetry,
            default_port=DEFAULT_PORT,
        )
        await stack.enter_async_context(serving(server, readiness=database.ping))
        logger.info(
            "mailchimp connector serving on %s, webhooks on %s:%d",
            server.address, settings.mailchimp.webhook_host, settings.mailchimp.webhook_port,
        )
        if on_serving is not None:
            await on_serving(server)
        await stop.wait()
        logger.info("mailchimp connector stopping")
