"""The identity service's composition root.

`serve(settings)` is what `main` runs; `build_app` wires the resolver from its parts and is
what tests call with overrides (a fake unit of work, a fixed clock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from opentelemetry import trace

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_db import Database
from cdp_grpc import ServiceRegistration
from cdp_identity.adapters.tables import SCHEMA
from cdp_identity.adapters.unit_of_work import SqlIdentityUnitOfWork
from cdp_identity.domain.identifiers import (
    DEFAULT_BLOCKED_PATTERNS,
    DEFAULT_BLOCKED_VALUES,
    BlockedValues,
)
from cdp_identity.domain.matching import DEFAULT_ODDS, Scorer
from cdp_identity.domain.merging import DEFAULT_LIMITS, IdentityLimits
from cdp_identity.entrypoints.grpc_servicer import IdentityServicer
from cdp_identity.service_layer.ports import IdentityUnitOfWork
from cdp_identity.service_layer.resolver import IdentityResolver, ResolverPolicy, utc_now
from cdp_identity.settings import DEFAULT_PORT, IdentitySettings
from cdp_service import OnServing, hosting
from cdp_telemetry import Telemetry

SERVICE_NAME = "cdp-identity"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class IdentityApp:
    resolver: IdentityResolver
    servicer: IdentityServicer


def policy_from(settings: IdentitySettings) -> ResolverPolicy:
    per_kind = dict(DEFAULT_LIMITS.per_kind)
    per_kind.update(settings.limits or {})
    return ResolverPolicy(
        default_region=settings.default_region,
        known_platforms=frozenset(settings.platforms),
        blocked=BlockedValues.of(
            (*DEFAULT_BLOCKED_VALUES, *settings.blocked_values), DEFAULT_BLOCKED_PATTERNS
        ),
        limits=IdentityLimits(per_kind=per_kind, max_merges=settings.max_merges),
        match_threshold=settings.match_threshold,
        match_prior=settings.match_prior,
        max_candidates=settings.max_candidates,
        verify_granularity=timedelta(seconds=settings.verify_granularity_seconds),
        suppression_key=settings.suppression_key.reveal().encode(),
        scorer=Scorer(DEFAULT_ODDS, prior=settings.match_prior),
    )


def build_app(
    settings: IdentitySettings,
    *,
    database: Database | None,
    uow_factory: Callable[[], IdentityUnitOfWork],
    tracer: trace.Tracer,
    clock: Callable[[], datetime] = utc_now,
) -> IdentityApp:
    resolver = IdentityResolver(
        database, uow_factory, policy=policy_from(settings), tracer=tracer, clock=clock
    )
    return IdentityApp(resolver=resolver, servicer=IdentityServicer(resolver))


async def serve(
    settings: IdentitySettings,
    *,
    stop: asyncio.Event | None = None,
    telemetry: Telemetry | None = None,
    on_serving: OnServing | None = None,
) -> None:
    """Runs the service until `stop` is set (SIGTERM / SIGINT by default)."""
    async with hosting(SERVICE_NAME, settings.telemetry, telemetry=telemetry, stop=stop) as host:
        database = await host.open_database(
            settings.database, schema=SCHEMA, migrations=MIGRATIONS, asyncpg_pool=True
        )
        await host.connect_nats(settings.nats)
        outbox = await host.start_outbox_relay(SCHEMA)
        sql_tracer = host.telemetry.tracer("cdp.sql")
        app = build_app(
            settings,
            database=database,
            uow_factory=lambda: SqlIdentityUnitOfWork(database.sessions, outbox, sql_tracer),
            tracer=sql_tracer,
        )
        await host.serve(
            settings.grpc,
            ServiceRegistration(
                identity_pb2_grpc.add_IdentityServiceServicer_to_server,
                app.servicer,
                identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
            ),
            default_port=DEFAULT_PORT,
            on_serving=on_serving,
        )
