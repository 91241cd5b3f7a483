"""The event router's composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp_bus import DurableConsumer, check_nats, close_nats, connect_nats, ensure_streams
from cdp_bus.subjects import (
    IDENTITY_FORGOTTEN,
    IDENTITY_MERGED,
    IDENTITY_UNMERGED,
    event_subject,
)
from cdp_db import Database, apply_migrations, create_database_engine
from cdp_event_router.adapters import codec
from cdp_event_router.adapters.config_files import (
    DEFAULTS,
    load_routing,
    load_tracking_plan,
    load_triggers,
)
from cdp_event_router.adapters.peers import IdentityClient, ProfileClient
from cdp_event_router.adapters.relay import EventRelay
from cdp_event_router.domain.routing import RoutingTable
from cdp_event_router.domain.triggers import TriggerSet
from cdp_event_router.domain.validation import EventValidator, TrackingPlan
from cdp_event_router.entrypoints.consumers import IdentityHandler, TriggerHandler
from cdp_event_router.entrypoints.grpc_servicer import EventRouterServicer
from cdp_event_router.entrypoints.http_tracking import TrackingApi
from cdp_event_router.service_layer.identity_changes import IdentityFollower
from cdp_event_router.service_layer.ingest import EventIngest
from cdp_event_router.service_layer.replay import EventReplayer
from cdp_event_router.service_layer.triggers import TriggerRunner
from cdp_event_router.settings import DEFAULT_PORT, EventRouterSettings, parse_write_keys
from cdp_grpc import (
    GrpcServer,
    ServiceRegistration,
    background,
    create_channel,
    serving,
    stop_on_signals,
)
from cdp_telemetry import Telemetry, configure_telemetry

logger = logging.getLogger(__name__)

SERVICE_NAME = "cdp-event-router"
SCHEMA = "event_router"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class RouterConfig:
    routing: RoutingTable
    triggers: TriggerSet
    plan: TrackingPlan
    write_keys: dict[str, str]


def load_config(settings: EventRouterSettings) -> RouterConfig:
    """Every declarative file, validated; raises ConfigError naming file, line and entry."""
    return RouterConfig(
        routing=load_routing(settings.routing_file or DEFAULTS / "routing.yaml"),
        triggers=load_triggers(settings.triggers_file or DEFAULTS / "triggers.yaml"),
        plan=load_tracking_plan(settings.tracking_plan_file),
        write_keys=parse_write_keys(settings.write_keys.reveal()),
    )


@contextlib.asynccontextmanager
async def http_site(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    try:
        yield int(bound)
    finally:
        await runner.cleanup()


@dataclass
class RunningRouter:
    server: GrpcServer
    http_port: int
    relay: EventRelay


async def serve(
    settings: EventRouterSettings,
    *,
    stop: asyncio.Event | None = None,
    telemetry: Telemetry | None = None,
    on_serving: Callable[[GrpcServer], Awaitable[None]] | None = None,
    on_running: Callable[[RunningRouter], Awaitable[None]] | None = None,
) -> None:
    config = load_config(settings)
    stop = stop or stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        if telemetry is None:
            telemetry = configure_telemetry(SERVICE_NAME, settings.telemetry)
            stack.callback(telemetry.shutdown)
        tracer = telemetry.tracer("cdp.sql")
        engine = create_database_engine(settings.database, application_name=SERVICE_NAME)
        telemetry.instrument_engine(engine)
        database = Database(engine)
        stack.push_async_callback(database.dispose)
        await apply_migrations(engine, schema=SCHEMA, migrations_dir=MIGRATIONS)
        await database.open_pool(settings.database.url, max_size=settings.database.pool_size)

        nats_client = await connect_nats(settings.nats, name=SERVICE_NAME)
        stack.push_async_callback(close_nats, nats_client)
        js = nats_client.jetstream()
        await ensure_streams(js, replicas=settings.nats.stream_replicas)

        identity_channel = create_channel(settings.identity_addr, settings.clients,
                                          telemetry=telemetry)
        stack.push_async_callback(identity_channel.close, None)
        profile_channel = create_channel(settings.profile_addr, settings.clients,
                                         telemetry=telemetry)
        stack.push_async_callback(profile_channel.close, None)

        relay = EventRelay(database, js, tracer=telemetry.tracer("cdp.events.relay"),
                           batch_size=settings.batch_size,
                           batch_max_delay=settings.batch_max_delay_seconds)
        stack.push_async_callback(relay.flush)
        await stack.enter_async_context(background(relay.run(), name="event-relay"))

        follower = IdentityFollower(database, tracer=tracer)
        identity_consumer = DurableConsumer(
            js, stream="CDP_IDENTITY", durable="event-router-identity",
            subjects=[IDENTITY_MERGED, IDENTITY_UNMERGED, IDENTITY_FORGOTTEN],
            handler=IdentityHandler(follower), tracer=telemetry.tracer("cdp.bus"),
        )
        await stack.enter_async_context(
            background(identity_consumer.run(), name="identity-consumer"))
        if settings.triggers_enabled and config.triggers.triggers:
            runner = TriggerRunner(database, ProfileClient(profile_channel), config.triggers,
                                   tracer=tracer)
            trigger_consumer = DurableConsumer(
                js, stream="CDP_EVENTS", durable="event-router-triggers",
                subjects=[event_subject(t) for t in config.triggers.event_types],
                batch_handler=TriggerHandler(runner), tracer=telemetry.tracer("cdp.bus"),
                batch_size=200,
            )
            await stack.enter_async_context(
                background(trigger_consumer.run(), name="trigger-consumer"))

        ingest = EventIngest(
            database, IdentityClient(identity_channel), config.routing,
            EventValidator(known_sources=frozenset(settings.sources), plan=config.plan),
            encode=codec.encode, raw_json=codec.raw_json, relay=relay, tracer=tracer,
            quarantine_invalid=settings.quarantine_invalid,
        )
        replayer = EventReplayer(database, js, config.routing, tracer=tracer)
        servicer = EventRouterServicer(ingest, replayer, database, tracer=tracer)
        http_port = await stack.enter_async_context(http_site(
            TrackingApi(ingest, config.write_keys).app(), settings.http_host, settings.http_port))
        server = GrpcServer(
            settings.grpc,
            [ServiceRegistration(
                events_pb2_grpc.add_EventRouterServiceServicer_to_server, servicer,
                events_pb2.DESCRIPTOR.services_by_name["EventRouterService"].full_name,
            )],
            telemetry=telemetry,
            default_port=DEFAULT_PORT,
        )

        async def readiness() -> None:
            await database.ping()
            await check_nats(nats_client)

        await stack.enter_async_context(serving(server, readiness=readiness))
        logger.info("event router serving gRPC on %s, HTTP tracking API on port %d",
                    server.address, http_port)
        if on_serving is not None:
            await on_serving(server)
        if on_running is not None:
            await on_running(RunningRouter(server, http_port, relay))
        await stop.wait()
        logger.info("event router stopping")
