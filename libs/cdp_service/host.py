"""The start-up and shutdown every service shares, so that each `serve` holds only its wiring.

A service's `serve` enters `hosting(...)` and asks the host, in this order, for what it uses:
`open_database` (migrated), `connect_nats`, `start_outbox_relay`, channels to its peers
(`dial`), its own consumers and workers (`run_in_background`), HTTP endpoints (`serve_http`),
and last `serve` (the gRPC server, until the stop event is set). Each resource goes on the
host's one AsyncExitStack as it is opened, so leaving the block closes them in reverse, the
house order: health NOT_SERVING and `server.stop(grace)` first, then HTTP endpoints,
workers, the outbox relay's last flush, peer channels, the NATS drain, the engine's disposal
and finally the tracer flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext

from cdp_bus import (
    NatsSettings,
    OutboxRelay,
    SqlOutbox,
    check_nats,
    close_nats,
    connect_nats,
    ensure_streams,
)
from cdp_db import Database, DatabaseSettings, apply_migrations, create_database_engine
from cdp_grpc import (
    GrpcClientSettings,
    GrpcServer,
    GrpcServerSettings,
    ServiceRegistration,
    background,
    create_channel,
    serving,
    stop_on_signals,
)
from cdp_telemetry import Telemetry, TelemetrySettings, configure_telemetry

logger = logging.getLogger(__name__)

OnServing = Callable[[GrpcServer], Awaitable[None]]


class ServiceHost:
    """One service process's shared resources, each closed on the way out of `hosting`.

    `stack` is the AsyncExitStack they live on: a service pushes its own resources (its
    connector channels, a platform API client) onto it at the point where it opens them.
    """

    def __init__(
        self, name: str, stack: contextlib.AsyncExitStack, telemetry: Telemetry, stop: asyncio.Event
    ) -> None:
        self.name = name
        self.stack = stack
        self.telemetry = telemetry
        self.stop = stop
        self._database: Database | None = None
        self._nats: Client | None = None
        self._jetstream: JetStreamContext | None = None

    @property
    def database(self) -> Database:
        if self._database is None:
            raise RuntimeError("ServiceHost.open_database() first")
        return self._database

    @property
    def jetstream(self) -> JetStreamContext:
        if self._jetstream is None:
            raise RuntimeError("ServiceHost.connect_nats() first")
        return self._jetstream

    async def open_database(
        self,
        settings: DatabaseSettings,
        *,
        schema: str,
        migrations: Path,
        asyncpg_pool: bool = False,
    ) -> Database:
        """The service's database, traced and migrated to head; disposed on the way out.

        `asyncpg_pool` also opens the plain asyncpg pool (`Database.pool`) for hot paths.
        """
        engine = create_database_engine(settings, application_name=self.name)
        self.telemetry.instrument_engine(engine)
        database = Database(engine)
        self.stack.push_async_callback(database.dispose)
        await apply_migrations(engine, schema=schema, migrations_dir=migrations)
        if asyncpg_pool:
            await database.open_pool(settings.url, max_size=settings.pool_size)
        self._database = database
        return database

    async def connect_nats(self, settings: NatsSettings) -> JetStreamContext:
        """JetStream with every stream declared; the connection is drained on the way out."""
        client = await connect_nats(settings, name=self.name)
        self.stack.push_async_callback(close_nats, client)
        jetstream = client.jetstream()
        await ensure_streams(jetstream, replicas=settings.stream_replicas)
        self._nats = client
        self._jetstream = jetstream
        return jetstream

    async def start_outbox_relay(self, schema: str) -> SqlOutbox:
        """The outbox of `schema`, relayed to JetStream in the background from now on."""
        outbox = SqlOutbox(schema)
        relay = OutboxRelay(
            self.database, outbox, self.jetstream, tracer=self.telemetry.tracer("cdp.outbox")
        )
        # On the way out: stop relaying, publish what the last calls committed, then drain.
        self.stack.push_async_callback(relay.flush)
        await self.run_in_background(relay.run(), name="outbox-relay")
        return outbox

    async def run_in_background(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Runs `work` as a task until the host closes (see `cdp_grpc.background`)."""
        await self.stack.enter_async_context(background(work, name=name))

    def dial(self, address: str, settings: GrpcClientSettings) -> grpc.aio.Channel:
        """A traced channel to a peer, connected lazily (the peer may still be starting)."""
        channel = create_channel(address, settings, telemetry=self.telemetry)
        self.stack.push_async_callback(channel.close, None)
        return channel

    async def serve_http(self, app: web.Application, host: str, port: int) -> int:
        """Serves `app` on host:port until the host closes; returns the port bound (0 picks
        a free one)."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, host, port).start()
        return int(runner.addresses[0][1]) if runner.addresses else port

    async def readiness(self) -> None:
        """Raises Unavailable unless the database and NATS the host opened both answer."""
        if self._database is not None:
            await self._database.ping()
        if self._nats is not None:
            await check_nats(self._nats)

    async def serve(
        self,
        settings: GrpcServerSettings,
        registration: ServiceRegistration,
        *,
        default_port: int,
        on_serving: OnServing | None = None,
    ) -> None:
        """Serves `registration` until the stop event is set.

        Health turns SERVING once `readiness` passes, and follows it from then on;
        `on_serving` is called with the server at that point.
        """
        server = GrpcServer(
            settings, [registration], telemetry=self.telemetry, default_port=default_port
        )
        await self.stack.enter_async_context(serving(server, readiness=self.readiness))
        logger.info("%s serving gRPC on %s", self.name, server.address)
        if on_serving is not None:
            await on_serving(server)
        await self.stop.wait()
        logger.info("%s stopping", self.name)


@contextlib.asynccontextmanager
async def hosting(
    name: str,
    telemetry_settings: TelemetrySettings,
    *,
    telemetry: Telemetry | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[ServiceHost]:
    """A host for the service `name` (its OpenTelemetry service name, e.g. "cdp-identity").

    Tracing is configured from `telemetry_settings` and flushed last on the way out, unless
    the caller passes its own `telemetry` (tests), which it then shuts down itself. `stop`
    defaults to an event set by SIGTERM or SIGINT, listened for from the start.
    """
    stop = stop or stop_on_signals()
    async with contextlib.AsyncExitStack() as stack:
        if telemetry is None:
            telemetry = configure_telemetry(name, telemetry_settings)
            stack.callback(telemetry.shutdown)
        yield ServiceHost(name, stack, telemetry, stop)
