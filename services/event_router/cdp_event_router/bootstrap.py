"""The event router's composition root."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp_bus import DurableConsumer
from cdp_bus.subjects import (
    IDENTITY_FORGOTTEN,
    IDENTITY_MERGED,
    IDENTITY_UNMERGED,
    event_subject,
)
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
from cdp_grpc import GrpcServer, ServiceRegistration
from cdp_service import OnServing, hosting
from cdp_telemetry import Telemetry

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
    on_serving: OnServing | None = None,
    on_running: Callable[[RunningRouter], Awaitable[None]] | None = None,
) -> None:
    config = load_config(settings)
    async with hosting(SERVICE_NAME, settings.telemetry, telemetry=telemetry, stop=stop) as host:
        tracer = host.telemetry.tracer("cdp.sql")
        database = await host.open_database(
            settings.database, schema=SCHEMA, migrations=MIGRATIONS, asyncpg_pool=True
        )
        js = await host.connect_nats(settings.nats)
        identity_channel = host.dial(settings.identity_addr, settings.clients)
        profile_channel = host.dial(settings.profile_addr, settings.clients)

        relay = EventRelay(database, js, tracer=host.telemetry.tracer("cdp.events.relay"),
                           batch_size=settings.batch_size,
                           batch_max_delay=settings.batch_max_delay_seconds)
        host.stack.push_async_callback(relay.flush)
        await host.run_in_background(relay.run(), name="event-relay")

        follower = IdentityFollower(database, tracer=tracer)
        identity_consumer = DurableConsumer(
            js, stream="CDP_IDENTITY", durable="event-router-identity",
            subjects=[IDENTITY_MERGED, IDENTITY_UNMERGED, IDENTITY_FORGOTTEN],
            handler=IdentityHandler(follower), tracer=host.telemetry.tracer("cdp.bus"),
        )
        await host.run_in_background(identity_consumer.run(), name="identity-consumer")
        if settings.triggers_enabled and config.triggers.triggers:
            runner = TriggerRunner(database, ProfileClient(profile_channel), config.triggers,
                                   tracer=tracer)
            trigger_consumer = DurableConsumer(
                js, stream="CDP_EVENTS", durable="event-router-triggers",
                subjects=[event_subject(t) for t in config.triggers.event_types],
                batch_handler=TriggerHandler(runner), tracer=host.telemetry.tracer("cdp.bus"),
                batch_size=200,
            )
            await host.run_in_background(trigger_consumer.run(), name="trigger-consumer")

        ingest = EventIngest(
            database, IdentityClient(identity_channel), config.routing,
            EventValidator(known_sources=frozenset(settings.sources), plan=config.plan),
            encode=codec.encode, raw_json=codec.raw_json, relay=relay, tracer=tracer,
            quarantine_invalid=settings.quarantine_invalid,
        )
        replayer = EventReplayer(database, js, config.routing, tracer=tracer)
        servicer = EventRouterServicer(ingest, replayer, database, tracer=tracer)
        http_port = await host.serve_http(
            TrackingApi(ingest, config.write_keys).app(), settings.http_host, settings.http_port)
        logger.info("event router HTTP tracking API on port %d", http_port)

        async def announce(server: GrpcServer) -> None:
            if on_serving is not None:
                await on_serving(server)
            if on_running is not None:
                await on_running(RunningRouter(server, http_port, relay))

        await host.serve(
            settings.grpc,
            ServiceRegistration(
                events_pb2_grpc.add_EventRouterServiceServicer_to_server, servicer,
                events_pb2.DESCRIPTOR.services_by_name["EventRouterService"].full_name,
            ),
            default_port=DEFAULT_PORT,
            on_serving=announce,
        )
