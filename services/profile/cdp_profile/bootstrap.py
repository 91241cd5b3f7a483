"""The profile service's composition root.

`serve(settings)` is what `main` runs; `build_app` wires the handlers from their parts and
is what tests call with fakes (a unit of work, an identity port, connectors, a clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_connector_client import ConnectorChannels
from cdp_grpc import ServiceRegistration
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
from cdp_service import OnServing, hosting
from cdp_telemetry import Telemetry

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
    on_serving: OnServing | None = None,
) -> None:
    """Runs the service until `stop` is set (SIGTERM / SIGINT by default)."""
    config = config or config_for(settings)
    async with hosting(SERVICE_NAME, settings.telemetry, telemetry=telemetry, stop=stop) as host:
        database = await host.open_database(
            settings.database, schema=SCHEMA, migrations=MIGRATIONS
        )
        js = await host.connect_nats(settings.nats)
        outbox = await host.start_outbox_relay(SCHEMA)

        # Peers are dialled lazily: the profile service serves (and ingests fragments that
        # carry a customer id) while identity or a connector is still starting.
        identity_channel = host.dial(settings.identity_address, settings.client)
        connectors = ConnectorChannels(
            dict(settings.connector_addresses), settings.client, telemetry=host.telemetry
        )
        host.stack.push_async_callback(connectors.close)

        processed = inbox()
        app = build_app(
            settings,
            config=config,
            uow_factory=lambda: SqlProfileUnitOfWork(database.sessions, outbox, processed),
            identity=GrpcIdentityClient(
                identity_channel, timeout=settings.client.default_timeout_seconds
            ),
            connectors=GrpcConnectorGateway(connectors),
        )
        consumer = identity_consumer(
            js, app.identity_events, tracer=host.telemetry.tracer("cdp.profile.consumer")
        )
        await host.run_in_background(consumer.run(), name="identity-events")
        await host.serve(
            settings.grpc,
            ServiceRegistration(
                profile_pb2_grpc.add_ProfileServiceServicer_to_server,
                app.servicer,
                profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name,
            ),
            default_port=DEFAULT_PORT,
            on_serving=on_serving,
        )
