"""The identity service's composition root.

`serve(settings)` is what `main` runs; `build_app` wires the resolver from its parts and is
what tests call with overrides (a fake unit of work, a fixed clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_bus import (
    OutboxRelay,
    SqlOutbox,
    check_nats,
    close_nats,
    connect_nats,
    ensure_streams,
)
from cdp_db import Database, apply_migrations, create_database_engine
from cdp_grpc import GrpcServer, ServiceRegistration, background, serving, stop_on_signals
from cdp_identity.adapters.tables import SCHEMA
from cdp_identity.adapters.unit_of_work import SqlIdentityUnitOfWork
from cdp_identity.entrypoints.grpc_servicer import IdentityServicer
from cdp_identity.service_layer.ports import IdentityUnitOfWork
from cdp_identity.service_layer.resolver import IdentityResolver, utc_now
from cdp_identity.settings import DEFAULT_PORT, IdentitySettings
from cdp_telemetry import Telemetry, configure_telemetry

logger = logging.getLogger(__name__)

SERVICE_NAME = "cdp-identity"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class IdentityApp:
    resolver: IdentityResolver
    servicer: IdentityServicer


def build_app(
    settings: IdentitySettings,
    *,
    uow_factory: Callable[[], IdentityUnitOfWork],
    clock: Callable[[], datetime] = utc_now,
) -> IdentityApp:
    resolver = IdentityResolver(
        uow_factory,
        default_region=settings.default_region,
        known_platforms=frozenset(settings.platforms),
        clock=clock,
    )
    # Merge, unmerge, forget and the merge log answer UNIMPLEMENTED (the generated base class)
    # until the identity capability beyond deterministic resolution is built.
    servicer = IdentityServicer(resolver)  # type: ignore[abstract]
    return IdentityApp(resolver=resolver, servicer=servicer)


async def serve(
    settings: IdentitySettings,
    *,
    stop: asyncio.Event | None = None,
    telemetry: Telemetry | None = None,
    on_serving: Callable[[GrpcServer], Awaitable[None]] | None = None,
) -> None:
    """Runs the service until `stop` is set (SIGTERM / SIGINT by default)."""
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
        # On the way out: stop relaying, publish what the last calls committed, then drain.
        stack.push_async_callback(relay.flush)
        await stack.enter_async_context(background(relay.run(), name="outbox-relay"))

        app = build_app(
            settings, uow_factory=lambda: SqlIdentityUnitOfWork(database.sessions, outbox)
        )
        server = GrpcServer(
            settings.grpc,
            [
                ServiceRegistration(
                    identity_pb2_grpc.add_IdentityServiceServicer_to_server,
                    app.servicer,
                    identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
                )
            ],
            telemetry=telemetry,
            default_port=DEFAULT_PORT,
        )

        async def readiness() -> None:
            await database.ping()
            await check_nats(nats_client)

        await stack.enter_async_context(serving(server, readiness=readiness))
        logger.info("identity service serving on %s", server.address)
        if on_serving is not None:
            await on_serving(server)
        await stop.wait()
        logger.info("identity service stopping")
