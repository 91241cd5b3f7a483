from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdp_errors import InvalidArgument
from cdp_identity.bootstrap import build_app
from cdp_identity.domain.identifiers import RawIdentifiers
from cdp_identity.domain.model import MatchMethod, ResolveIdentity
from cdp_identity.service_layer.resolver import IdentityResolver
from cdp_identity.settings import IdentitySettings

from .fakes import FakeIdentityUnitOfWork, FakeStore

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def resolver(store: FakeStore) -> IdentityResolver:
    app = build_app(
        IdentitySettings(), uow_factory=lambda: FakeIdentityUnitOfWork(store), clock=lambda: NOW
    )
    return app.resolver


def command(*, email: str = "", phone: str = "") -> ResolveIdentity:
    return ResolveIdentity(RawIdentifiers(email=email, phone=phone), source_platform="crm")


async def test_unknown_identifiers_create_a_customer_and_announce_it(
    resolver: IdentityResolver, store: FakeStore
) -> None:
    resolution = await resolver.resolve(command(email="ada@example.com", phone="+14155552671"))
    assert resolution.method is MatchMethod.NEW and resolution.created
    assert list(store.customers) == [resolution.customer_id]
    (event,) = store.events
    assert event.customer_id == resolution.customer_id
    assert event.identity_types == ("email", "phone")
    assert event.source_platform == "crm"


async def test_a_known_email_resolves_deterministically_whatever_its_case(
    resolver: IdentityResolver,
) -> None:
    first = await resolver.resolve(command(email="ada@example.com"))
    again = await resolver.resolve(command(email=" ADA@Example.com"))
    assert again.customer_id == first.customer_id
    assert again.method is MatchMethod.DETERMINISTIC
    assert again.matched_on == ("email",) and not again.created


async def test_new_identifiers_attach_to_the_matched_customer(
    resolver: IdentityResolver, store: FakeStore
) -> None:
    first = await resolver.resolve(command(email="ada@example.com"))
    await resolver.resolve(command(email="ada@example.com", phone="(415) 555-2671"))
    by_phone = await resolver.resolve(command(phone="+1 415 555 2671"))
    assert by_phone.customer_id == first.customer_id
    assert by_phone.matched_on == ("phone",)
    assert len(store.customers) == 1


async def test_the_highest_priority_identifier_decides_between_two_customers(
    resolver: IdentityResolver,
) -> None:
    by_email = await resolver.resolve(command(email="ada@example.com"))
    by_phone = await resolver.resolve(command(phone="+14155552671"))
    both = await resolver.resolve(command(email="ada@example.com", phone="+14155552671"))
    assert by_email.customer_id != by_phone.customer_id
    assert both.customer_id == by_email.customer_id
    assert both.matched_on == ("email",)


async def test_invalid_input_is_rejected_before_anything_is_stored(
    resolver: IdentityResolver, store: FakeStore
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await resolver.resolve(command(email="not-an-email", phone="12"))
    assert [v.field for v in caught.value.violations] == ["identifiers.email", "identifiers.phone"]
    assert store.customers == {} and store.identities == {}


async def test_unknown_source_platform_is_rejected(resolver: IdentityResolver) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await resolver.resolve(
            ResolveIdentity(RawIdentifiers(email="ada@example.com"), source_platform="myspace")
        )
    assert [v.field for v in caught.value.violations] == ["source_platform"]


async def test_identity_map_needs_a_well_formed_customer_id(resolver: IdentityResolver) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await resolver.identity_map("not-a-uuid")
    assert caught.value.violations[0].field == "customer_id"
