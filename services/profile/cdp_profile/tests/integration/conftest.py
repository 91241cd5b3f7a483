from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from cdp.profile.v1 import profile_pb2_grpc
from cdp_bus import NatsSettings
from cdp_db import DatabaseSettings
from cdp_embedded import EmbeddedNats, to_asyncpg_dsn
from cdp_grpc import GrpcClientSettings, GrpcServerSettings, create_channel
from cdp_profile.bootstrap import serve
from cdp_profile.config.loader import DEFAULT_MAPPINGS_FILE
from cdp_profile.settings import ProfileSettings
from cdp_telemetry import Telemetry
from cdp_testing.fixtures import (  # noqa: F401
    database_url,
    nats,
    postgres_admin_url,
    span_exporter,
    telemetry,
)
from cdp_testing.services import OnServing, service_running

from ..fakes import (
    FakeConnectorServicer,
    FakeIdentityServicer,
    connector_server,
    fake_connector,
    fake_identity,
    identity_server,
)

if TYPE_CHECKING:
    from cdp.profile.v1.profile_pb2_grpc import ProfileServiceAsyncStub


@dataclass
class Peers:
    identity: FakeIdentityServicer
    connectors: dict[str, FakeConnectorServicer]
    addresses: dict[str, str]


@dataclass
class RunningProfile:
    address: str
    stub: ProfileServiceAsyncStub
    settings: ProfileSettings
    peers: Peers
    database: asyncpg.Connection

    async def count(self, table: str) -> int:
        value: int = await self.database.fetchval(f"SELECT count(*) FROM profile.{table}")
        return value


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    """A fake identity service and three fake connectors (ok, failing, hanging) on real gRPC."""
    identity = fake_identity()
    connectors = {
        "mailchimp": fake_connector("ok"),
        "support": fake_connector("fail"),
        "analytics": fake_connector("hang"),
    }
    async with (
        identity_server(identity) as identity_address,
        connector_server(connectors["mailchimp"]) as mailchimp,
        connector_server(connectors["support"]) as support,
        connector_server(connectors["analytics"]) as analytics,
    ):
        yield Peers(
            identity,
            connectors,
            {
                "identity": identity_address,
                "mailchimp": mailchimp,
                "support": support,
                "analytics": analytics,
            },
        )


# The packaged mappings write only to Mailchimp; the failing and hanging connectors need
# mappings into their platforms too.
EXTRA_MAPPINGS = """\
  - source: crm
    target: support
    fields:
      - {from: user.firstName, to: contact.firstName}
  - source: crm
    target: analytics
    fields:
      - {from: user.firstName, to: traits.firstName}
"""


@pytest.fixture
def mappings_file(tmp_path: Path) -> Path:
    path = tmp_path / "mappings.yaml"
    path.write_text(DEFAULT_MAPPINGS_FILE.read_text() + EXTRA_MAPPINGS)
    return path


@pytest.fixture
def profile_settings(
    database_url: str, nats: EmbeddedNats, peers: Peers, mappings_file: Path
) -> ProfileSettings:
    return replace(
        ProfileSettings(),
        grpc=GrpcServerSettings(port=0, shutdown_grace_seconds=2.0),
        database=DatabaseSettings(url=database_url),
        nats=NatsSettings(url=nats.url),
        identity_address=peers.addresses["identity"],
        mappings_file=mappings_file,
        sync_target_timeout_seconds=1.0,
        connector_addresses=tuple(
            (platform, address)
            for platform, address in peers.addresses.items()
            if platform != "identity"
        ),
    )


@pytest.fixture
async def profile(
    profile_settings: ProfileSettings, telemetry: Telemetry, peers: Peers
) -> AsyncIterator[RunningProfile]:
    async def start(stop: asyncio.Event, on_serving: OnServing) -> None:
        await serve(profile_settings, stop=stop, telemetry=telemetry, on_serving=on_serving)

    async with service_running(start) as server:
        channel = create_channel(server.address, GrpcClientSettings(), telemetry=telemetry)
        dsn, kwargs = to_asyncpg_dsn(profile_settings.database.url)
        database = await asyncpg.connect(dsn, **kwargs)
        try:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            yield RunningProfile(server.address, stub, profile_settings, peers, database)
        finally:
            await database.close()
            await channel.close(None)
