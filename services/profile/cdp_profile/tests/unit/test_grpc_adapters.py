"""The identity and connector clients against real gRPC servers on port 0."""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import replace

from cdp.connector.v1 import connector_pb2
from cdp_connector_client import ConnectorChannels
from cdp_embedded.nats import free_port
from cdp_errors import InvalidArgument, Unavailable
from cdp_grpc import GrpcClientSettings, create_channel
from cdp_mappings import parse_mappings
from cdp_profile.adapters.connector_client import GrpcConnectorGateway
from cdp_profile.adapters.identity_client import GrpcIdentityClient
from cdp_profile.config.loader import ProfileConfig
from cdp_profile.domain.model import Identifiers
from cdp_profile.service_layer.ports import ResolveRequest
from cdp_profile.settings import ProfileSettings
from cdp_settings.platforms import KNOWN_PLATFORMS
from cdp_testing import wait_until

from ..fakes import connector_server, fake_connector, fake_identity, identity_server
from .conftest import fragment, make_harness


async def test_the_identity_client_resolves_a_whole_batch_in_one_call() -> None:
    servicer = fake_identity()
    async with identity_server(servicer) as address:
        channel = create_channel(address, GrpcClientSettings())
        client = GrpcIdentityClient(channel, timeout=5)
        results = await client.resolve(
            [
                ResolveRequest(Identifiers(email="ada@example.com"), "crm"),
                ResolveRequest(Identifiers(email="broken"), "crm"),
                ResolveRequest(Identifiers(email="ADA@example.com"), "ecommerce"),
            ]
        )
        await channel.close(None)
    first, bad, same = results
    assert isinstance(first, str) and first == same
    assert isinstance(bad, InvalidArgument)
    assert [v.field for v in bad.violations] == ["identifiers.email"]
    assert servicer.batch_calls == [3] and servicer.single_calls == 0


async def test_an_unreachable_identity_service_is_unavailable() -> None:
    channel = create_channel(f"127.0.0.1:{free_port()}", GrpcClientSettings())
    client = GrpcIdentityClient(channel, timeout=2)
    try:
        await client.resolve([ResolveRequest(Identifiers(email="ada@example.com"), "crm")])
    except Unavailable as error:
        assert "UNAVAILABLE" in str(error)
        assert "ada@example.com" not in str(error)
    else:
        raise AssertionError("expected Unavailable")
    finally:
        await channel.close(None)


MAPPINGS = textwrap.dedent(
    """\
    mappings:
      - source: crm
        target: mailchimp
        fields:
          - {from: user.firstName, to: merge_fields.FNAME}
          - {from: user.email, to: email_address}
          - {from: user.tags, to: tags, transform: mailchimp_tags}
          - {from: customer.totalSpent, to: merge_fields.TOTSPENT, transform: number}
      - source: crm
        target: support
        fields:
          - {from: user.firstName, to: name}
      - source: crm
        target: analytics
        fields:
          - {from: user.firstName, to: traits.firstName}
      - source: crm
        target: personalization
        fields:
          - {from: user.firstName, to: traits.firstName}
    """
)


async def test_a_sync_over_grpc_reports_each_target_and_a_hung_one_only_costs_its_deadline(
    default_config: ProfileConfig,
) -> None:
    servers = {
        "mailchimp": fake_connector("ok"),
        "support": fake_connector("fail"),
        "analytics": fake_connector("hang"),
        "personalization": fake_connector("refuse"),
    }
    config = replace(
        default_config, mappings=parse_mappings(MAPPINGS, "m.yaml", platforms=KNOWN_PLATFORMS)
    )
    async with (
        connector_server(servers["mailchimp"]) as mailchimp,
        connector_server(servers["support"]) as support,
        connector_server(servers["analytics"]) as analytics,
        connector_server(servers["personalization"]) as personalization,
    ):
        addresses = {
            "mailchimp": mailchimp,
            "support": support,
            "analytics": analytics,
            "personalization": personalization,
        }
        channels = ConnectorChannels(addresses, GrpcClientSettings())
        gateway = GrpcConnectorGateway(channels)
        settings = replace(ProfileSettings(), sync_target_timeout_seconds=0.5)
        harness = make_harness(config, settings=settings)
        harness.app.syncer._connectors = gateway  # the real gRPC gateway instead of the fake
        customer = str(uuid.uuid4())
        await harness.app.ingestor.ingest_one(
            fragment(
                "crm",
                {
                    "user": {"firstName": "Ada", "email": "ada@example.com", "tags": ["vip"]},
                    "customer": {"totalSpent": 10.0},
                },
                customer_id=customer,
            )
        )
        results = await harness.app.syncer.sync(customer, "crm")
        hung = servers["analytics"]
        await wait_until(lambda: bool(hung.push_cancelled), message="the hung push cancelled")
        again = await harness.app.syncer.sync(customer, "crm", ["mailchimp"])
        await channels.close()
    by_platform = {r.platform: r for r in results}
    assert by_platform["mailchimp"].success and by_platform["mailchimp"].records_synced == 1
    assert by_platform["support"].error.startswith("support connector answered INTERNAL")
    assert by_platform["analytics"].error == "no answer within 0.5 s"
    refused = by_platform["personalization"]
    assert not refused.success and refused.permanent and refused.records_failed == 1
    assert refused.error == "Member In Compliance State"
    # Every target was called while the hung one was still waiting: they ran side by side.
    later_targets = [servers[name].push_started[0] for name in ("personalization", "support")]
    assert all(started < hung.push_cancelled[0] for started in later_targets)
    assert servers["mailchimp"].pushed[0] == {
        "merge_fields": {"FNAME": "Ada", "TOTSPENT": 10.0},
        "tags": [{"name": "vip", "status": "active"}],
    }
    assert servers["mailchimp"].emails == ["ada@example.com", "ada@example.com"]
    assert servers["mailchimp"].ensured == [
        [("FNAME", connector_pb2.FIELD_TYPE_TEXT), ("TOTSPENT", connector_pb2.FIELD_TYPE_NUMBER)]
    ]
    assert again[0].success
