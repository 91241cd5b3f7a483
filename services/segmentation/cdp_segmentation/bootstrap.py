"""The segmentation service's composition root.

`serve(settings)` is what `main` runs; `build_app` wires the handlers from their parts (a
unit of work factory, the connectors, the sync lock, a clock), which tests call with their
own connectors and clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cdp.segmentation.v1 import segmentation_pb2, segmentation_pb2_grpc
from cdp_connector_client import ConnectorChannels
from cdp_db import TracedConnection
from cdp_grpc import ServiceRegistration
from cdp_segmentation.adapters.catalog import apply_declared_fields
from cdp_segmentation.adapters.clock import ShiftedClock, utc_now
from cdp_segmentation.adapters.connector_client import GrpcConnectors
from cdp_segmentation.adapters.sql_compiler import SCHEMA
from cdp_segmentation.adapters.sync_store import AdvisorySyncLock
from cdp_segmentation.adapters.unit_of_work import SqlSegmentationUnitOfWork
from cdp_segmentation.config.loader import load_attribute_schema
from cdp_segmentation.domain.model import FieldSpec
from cdp_segmentation.entrypoints.grpc_servicer import SegmentationServicer
from cdp_segmentation.entrypoints.profile_consumer import CONSUMER, profile_consumer
from cdp_segmentation.entrypoints.scheduler import Scheduler
from cdp_segmentation.service_layer.catalog import CatalogCache
from cdp_segmentation.service_layer.ports import Clock, ConnectorPort, UnitOfWorkFactory
from cdp_segmentation.service_layer.profiles import ProfileEventHandler
from cdp_segmentation.service_layer.segments import SegmentService
from cdp_segmentation.service_layer.sync import SegmentSyncer, SyncLock, SyncOptions
from cdp_segmentation.service_layer.time_passing import TimeReevaluator
from cdp_segmentation.settings import DEFAULT_PORT, SegmentationSettings
from cdp_service import OnServing, hosting
from cdp_telemetry import Telemetry

logger = logging.getLogger(__name__)

SERVICE_NAME = "cdp-segmentation"
MIGRATIONS = Path(__file__).parent / "migrations"


def attributes_for(settings: SegmentationSettings) -> dict[str, FieldSpec]:
    """The declared fields `settings` point at; ConfigError names every problem."""
    return load_attribute_schema(settings.attributes_file, platforms=settings.platforms)


def clock_for(settings: SegmentationSettings) -> Clock:
    if settings.clock_shift_file is not None:
        return ShiftedClock(settings.clock_shift_file)
    return utc_now


@dataclass
class SegmentationApp:
    cache: CatalogCache
    segments: SegmentService
    profiles: ProfileEventHandler
    time: TimeReevaluator
    syncer: SegmentSyncer
    scheduler: Scheduler
    servicer: SegmentationServicer


def build_app(
    settings: SegmentationSettings,
    *,
    uow_factory: UnitOfWorkFactory,
    connectors: ConnectorPort,
    sync_lock: SyncLock,
    clock: Clock = utc_now,
) -> SegmentationApp:
    cache = CatalogCache()
    segments = SegmentService(
        uow_factory,
        cache,
        platforms=settings.platforms,
        clock=clock,
        members_page_size=settings.members_page_size,
    )
    profiles = ProfileEventHandler(
        uow_factory,
        cache,
        consumer=CONSUMER,
        email_field=settings.email_field,
        clock=clock,
        max_learned_fields=settings.max_learned_fields,
    )
    time = TimeReevaluator(uow_factory, cache, clock=clock)
    syncer = SegmentSyncer(
        uow_factory,
        connectors,
        sync_lock,
        options=SyncOptions(
            chunk_size=settings.sync_chunk_size,
            call_timeout=settings.sync_timeout_seconds,
            retry_base=settings.sync_retry_base_seconds,
            retry_max=settings.sync_retry_max_seconds,
            busy_wait=settings.sync_wait_seconds,
            max_full_resync_members=settings.max_full_resync_members,
        ),
        clock=clock,
    )
    scheduler = Scheduler(
        time,
        syncer,
        clock=clock,
        poll_seconds=settings.sync_poll_seconds,
        reevaluate_seconds=settings.reevaluate_interval_seconds,
    )
    servicer = SegmentationServicer(segments, syncer)
    return SegmentationApp(cache, segments, profiles, time, syncer, scheduler, servicer)


async def serve(
    settings: SegmentationSettings,
    *,
    attributes: Mapping[str, FieldSpec] | None = None,
    stop: asyncio.Event | None = None,
    telemetry: Telemetry | None = None,
    on_serving: OnServing | None = None,
    on_app: Callable[[SegmentationApp], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    run_scheduler: bool = True,
) -> None:
    """Runs the service until `stop` is set (SIGTERM / SIGINT by default).

    `on_app` sees the wired handlers (tests drive the scheduler's work through them, with
    `run_scheduler=False`, at instants of their own `clock`).
    """
    attributes = attributes if attributes is not None else attributes_for(settings)
    clock = clock or clock_for(settings)
    async with hosting(SERVICE_NAME, settings.telemetry, telemetry=telemetry, stop=stop) as host:
        database = await host.open_database(
            settings.database, schema=SCHEMA, migrations=MIGRATIONS
        )
        tracer = host.telemetry.tracer("cdp.segmentation.sql")
        async with database.raw_connection() as raw:
            changes = await apply_declared_fields(TracedConnection(raw, tracer), attributes)
        for change in changes:
            logger.info("attribute schema: %s", change)

        js = await host.connect_nats(settings.nats)
        outbox = await host.start_outbox_relay(SCHEMA)
        connectors = ConnectorChannels(
            dict(settings.connector_addresses), settings.client, telemetry=host.telemetry
        )
        host.stack.push_async_callback(connectors.close)
        app = build_app(
            settings,
            uow_factory=lambda: SqlSegmentationUnitOfWork(database.sessions, outbox, tracer),
            connectors=GrpcConnectors(connectors),
            sync_lock=AdvisorySyncLock(database),
            clock=clock,
        )
        if on_app is not None:
            on_app(app)
        consumer = profile_consumer(
            js,
            app.profiles,
            tracer=host.telemetry.tracer("cdp.segmentation.consumer"),
            batch_size=settings.consumer_batch,
        )
        await host.run_in_background(consumer.run(), name="profile-events")
        if run_scheduler:
            await host.run_in_background(app.scheduler.run(), name="segment-scheduler")
        await host.serve(
            settings.grpc,
            ServiceRegistration(
                segmentation_pb2_grpc.add_SegmentationServiceServicer_to_server,
                app.servicer,
                segmentation_pb2.DESCRIPTOR.services_by_name["SegmentationService"].full_name,
            ),
            default_port=DEFAULT_PORT,
            on_serving=on_serving,
        )
