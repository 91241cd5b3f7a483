from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from cdp_profile.bootstrap import ProfileApp, build_app
from cdp_profile.config.loader import ProfileConfig, load_profile_config
from cdp_profile.domain.model import Identifiers, IngestFragment
from cdp_profile.settings import ProfileSettings
from cdp_settings.platforms import KNOWN_PLATFORMS

from ..fakes import FakeConnectors, FakeIdentity, FakeProfileUnitOfWork, FakeStore

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def fragment(
    source: str,
    attributes: dict[str, object],
    *,
    customer_id: str = "",
    email: str = "",
    hours_ago: float = 1.0,
    observed_at: tuple[int, int] | None = None,
) -> IngestFragment:
    moment = NOW - timedelta(hours=hours_ago)
    return IngestFragment(
        source=source,
        customer_id=customer_id,
        identifiers=Identifiers(email=email),
        attributes=attributes,
        observed_at=observed_at or (int(moment.timestamp()), moment.microsecond * 1000),
        attributes_size=len(repr(attributes)),
    )


@dataclass
class Harness:
    app: ProfileApp
    store: FakeStore
    identity: FakeIdentity
    connectors: FakeConnectors

    def rebuilt(self, config: ProfileConfig) -> Harness:
        """The same store and collaborators under another configuration."""
        return make_harness(config, self.store, self.identity, self.connectors)


def make_harness(
    config: ProfileConfig,
    store: FakeStore | None = None,
    identity: FakeIdentity | None = None,
    connectors: FakeConnectors | None = None,
    settings: ProfileSettings | None = None,
) -> Harness:
    store = store or FakeStore()
    identity = identity or FakeIdentity()
    connectors = connectors or FakeConnectors()
    ticks = itertools.count()
    clock: Callable[[], datetime] = lambda: NOW + timedelta(microseconds=next(ticks))  # noqa: E731
    app = build_app(
        settings or ProfileSettings(),
        config=config,
        uow_factory=lambda: FakeProfileUnitOfWork(store),
        identity=identity,
        connectors=connectors,
        clock=clock,
    )
    return Harness(app, store, identity, connectors)


@pytest.fixture
def default_config() -> ProfileConfig:
    return load_profile_config(strategies_file=None, mappings_file=None, platforms=KNOWN_PLATFORMS)


@pytest.fixture
def harness(default_config: ProfileConfig) -> Harness:
    return make_harness(default_config)
