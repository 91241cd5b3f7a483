from __future__ import annotations

import textwrap
import uuid
from dataclasses import replace

import pytest

from cdp_errors import InvalidArgument, NotFound
from cdp_mappings import parse_mappings
from cdp_profile.config.loader import ProfileConfig
from cdp_profile.settings import ProfileSettings
from cdp_settings.platforms import KNOWN_PLATFORMS

from ..fakes import FakeConnectors
from .conftest import Harness, fragment, make_harness

MAPPINGS = textwrap.dedent(
    """\
    mappings:
      - source: crm
        target: mailchimp
        fields:
          - {from: user.firstName, to: merge_fields.FNAME}
          - {from: user.email, to: email_address, transform: lowercase}
      - source: crm
        target: support
        fields:
          - {from: user.firstName, to: contact.name}
      - source: crm
        target: analytics
        fields:
          - {from: user.firstName, to: traits.first_name}
      - source: mailchimp
        target: crm
        fields:
          - {from: email.lastOpen, to: activity.lastOpen}
    """
)


@pytest.fixture
def sync_harness(default_config: ProfileConfig) -> Harness:
    config = replace(
        default_config, mappings=parse_mappings(MAPPINGS, "m.yaml", platforms=KNOWN_PLATFORMS)
    )
    connectors = FakeConnectors(
        {"mailchimp": "ok", "support": "fail", "analytics": "hang", "crm": "ok"}
    )
    settings = replace(ProfileSettings(), sync_target_timeout_seconds=0.2)
    return make_harness(config, connectors=connectors, settings=settings)


async def a_customer(harness: Harness) -> str:
    result = await harness.app.ingestor.ingest_one(
        fragment(
            "crm",
            {"user": {"firstName": "Ada", "email": "Ada@Example.com"}},
            customer_id=str(uuid.uuid4()),
        )
    )
    return result.customer_id


async def test_a_sync_fans_out_to_every_target_but_the_source_with_one_result_each(
    sync_harness: Harness,
) -> None:
    customer = await a_customer(sync_harness)
    results = await sync_harness.app.syncer.sync(customer, "crm")
    by_platform = {r.platform: r for r in results}
    assert list(by_platform) == ["mailchimp", "support", "analytics"]
    assert by_platform["mailchimp"].success and by_platform["mailchimp"].records_synced == 1
    assert not by_platform["support"].success
    assert "UNAVAILABLE" in by_platform["support"].error
    assert not by_platform["analytics"].success
    assert by_platform["analytics"].error == "no answer within 0.2 s"
    pushed = dict(sync_harness.connectors.pushed)
    assert pushed["mailchimp"].payload == {
        "merge_fields": {"FNAME": "Ada"},
    }
    assert pushed["mailchimp"].email == "ada@example.com"
    assert pushed["support"].payload == {"contact": {"name": "Ada"}}


async def test_a_sync_can_be_limited_to_some_targets_but_never_to_the_source(
    sync_harness: Harness,
) -> None:
    customer = await a_customer(sync_harness)
    (only,) = await sync_harness.app.syncer.sync(customer, "crm", ["mailchimp"])
    assert only.platform == "mailchimp" and only.success
    with pytest.raises(InvalidArgument) as caught:
        await sync_harness.app.syncer.sync(customer, "crm", ["crm", "nowhere"])
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("targets[0]", "is the source; a sync never goes back to it"),
        ("targets[1]", "unknown platform 'nowhere'"),
    ]


async def test_targets_without_a_mapping_or_a_connector_fail_alone(sync_harness: Harness) -> None:
    customer = await a_customer(sync_harness)
    no_mapping, no_connector = await sync_harness.app.syncer.sync(
        customer, "crm", ["shopify", "mailchimp"]
    )
    assert no_mapping.error == "no field mapping writes to shopify" and no_mapping.permanent
    assert no_connector.success
    sync_harness.connectors.behaviour.pop("mailchimp")
    (missing,) = await sync_harness.app.syncer.sync(customer, "crm", ["mailchimp"])
    assert (
        missing.error
        == "no connector address configured for mailchimp (CDP_CONNECTOR_MAILCHIMP_ADDR)"
    )


async def test_syncing_an_unknown_customer_or_from_an_unknown_source_is_an_error(
    sync_harness: Harness,
) -> None:
    with pytest.raises(NotFound):
        await sync_harness.app.syncer.sync(str(uuid.uuid4()), "crm")
    with pytest.raises(InvalidArgument, match="source: unknown platform 'fax'"):
        await sync_harness.app.syncer.sync(str(uuid.uuid4()), "fax")
