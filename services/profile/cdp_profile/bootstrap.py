"""The profile service's composition root.

`serve(settings)` is what `main` runs; `build_app` wires the handlers from their parts and
is what tests call with fakes (a unit of work, an identity port, connectors, a clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_bus import (
    OutboxRelay,
    SqlOutbox,
    check_nats,
    close_nats,
    connect_nats,
    ensure_streams,
)
from cdp_db import Database, apply_migrations, create_database_engine
from cdp_grpc import (
    GrpcServer,
    ServiceRegistration,
    background,
    create_channel,
    serving,
    stop_on_signals,
)
from cdp_profile.adapters.connector_client import GrpcConnectorGateway
from cdp_profile.adapters.identity_client import GrpcIdentityClient
from cdp_profile.adapters.tables import SCHEMA
from cdp_profile.adapters.unit_of_work import SqlProfileUnitOfWork, inbox
from cdp_profile.config.loader import ProfileConfig, load_profile_config
from cdp_profile.domain.documents import DocumentLimits
from cdp_profile.entrypoints.grpc_servicer import ProfileServicer
from cdp_profile.entrypoints.identity_consumer import CONSUMER, identity_consumer
from cdp_profile.service_layer.identity_events import IdentityEventHandler
from cdp_profile.service_layer.ingestion import FragmentIngestor, IngestLimits, utc_now
from cdp_profile.service_layer.ports import ConnectorPort, IdentityPort, ProfileUnitOfWork
from cdp_profile.service_layer.queries import ProfileQueries
from cdp_profile.service_layer.sync import ProfileSyncer
from cdp_profile.settings import DEFAULT_PORT, ProfileSettings
from cdp_telemetry import Telemetry, configure_telemetry

logger = logging.getLogger(__name__)

SERVICE_NAME = "cdp-profile"
MIGRATIONS = Path(__file__).parent / "migrations"


def config_for(settings: ProfileSettings) -> ProfileConfig:
    """The strategies and mappings `settings` point at; ConfigError names every problem."""
    return load_profile_config(
        strategies_file=settings.strategies_file,
        mappings_file=settings.mappings_file,
        platforms=settings.platforms,
    )


@dataclass
class ProfileApp:
    ingestor: FragmentIngestor
    queries: ProfileQueries
    syncer: ProfileSyncer
    identity_events: IdentityEventHandler
    servicer: ProfileServicer


def build_app(
    settings: ProfileSettings,
    *,
    config: ProfileConfig,
    uow_factory: Callable[[], ProfileUnitOfWork],
    identity: IdentityPort,
    connectors: ConnectorPort,
    clock: Callable[[], datetime] = utc_now,
) -> ProfileApp:
    platforms = frozenset(settings.platforms)
    ingestor = FragmentIngestor(
        uow_factory,
        identity,
        book=config.strategies,
        platforms=platforms,
        limits=IngestLimits(
            document=DocumentLimits(
                max_bytes=settings.max_attributes_bytes,
                max_depth=settings.max_attributes_depth,
                max_fields=settings.max_fields_per_fragment,
            ),
            max_batch=settings.max_batch_fragments,
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
        ),
        clock=clock,
    )
    queries = ProfileQueries(uow_factory)
    syncer = ProfileSyncer(
        queries,
        connectors,
        mappings=config.mappings,
        platforms=platforms,
        target_timeout=settings.sync_target_timeout_seconds,
        clock=clock,
    )
    identity_events = IdentityEventHandler(
        uow_factory, book=config.strategies, consumer=CONSUMER, clock=clock
    )
    servicer = ProfileServicer(
        ingestor, queries, syncer, max_attributes_bytes=settings.max_attributes_bytes
    )
    return ProfileApp(ingestor, queries, syncer, identity_events, servicer)


async def serve(
    settings: ProfileSettings,
    *,
    config: ProfileConfig | None = None,
    stop: asyncio.Event | None = None,
    telemetry: Telemetry | None = None,
    on_serving: Callable[[GrpcServer], Awaitable[None]] | None = None,
) -> None:
    """Runs the service until `stop` is set (SIGTERM / SIGINT by default)."""
    config = config or config_for(settings)
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

        nats_client = await connect_nats(settings.nats, name=SERVICE_NAME)
        stack.push_async_callback(close_nats, nats_client)
        js = nats_client.jetstream()
        await ensure_streams(js, replicas=settings.nats.stream_replicas)

        outbox = SqlOutbox(SCHEMA)
        relay = OutboxRelay(database, outbox, js, tracer=telemetry.tracer("cdp.outbox"))
        stack.push_async_callback(relay.flush)
        await stack.enter_async_context(background(relay.run(), name="outbox-relay"))

        # Peers are dialled lazily: the profile service serves (and ingests fragments that
        # carry a customer id) while identity or a connector is still starting.
        identity_channel = create_channel(
            settings.identity_address, settings.client, telemetry=telemetry
        )
        stack.push_async_callback(identity_channel.close, None)
        connectors = GrpcConnectorGateway(
            dict(settings.connector_addresses), settings.client, telemetry=telemetry
        )
        stack.push_async_callback(connectors.close)

        processed = inbox()
        app = build_app(
            settings,
            config=config,
            uow_factory=lambda: SqlProfileUnitOfWork(database.sessions, outbox, processed),
            identity=GrpcIdentityClient(
                identity_channel, timeout=settings.client.default_timeout_seconds
            ),
            connectors=connectors,
        )
        consumer = identity_consumer(
            js, app.identity_events, tracer=telemetry.tracer("cdp.profile.consumer")
        )
        await stack.enter_async_context(background(consumer.run(), name="identity-events"))

        server = GrpcServer(
            settings.grpc,
            [
                ServiceRegistration(
                    profile_pb2_grpc.add_ProfileServiceServicer_to_server,
                    app.servicer,
                    profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name,
                )
            ],
            telemetry=telemetry,
            default_port=DEFAULT_PORT,
        )

        async def readiness() -> None:
            await database.ping()
            await check_nats(nats_client)

        await stack.enter_async_context(serving(server, readiness=readiness))
        logger.info("profile service serving on %s", server.address)
        if on_serving is not None:
            await on_serving(server)
        await stop.wait()
        logger.info("profile service stopping")
