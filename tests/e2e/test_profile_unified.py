"""A customer fed by two platforms, through the suite as a user runs it (`cdp up`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cdp_cli.reflection_client import ReflectionClient

from .suite import RunningSuite, suite_up

PROFILE = "cdp.profile.v1.ProfileService"


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[RunningSuite]:
    with suite_up(tmp_path, {"CDP_PROFILE_SYNC_TARGET_TIMEOUT_SECONDS": "3"}) as running:
        yield running


def ingest(client: ReflectionClient, source: str, attributes: dict[str, object], at: str) -> dict:
    request = json.dumps(
        {
            "fragment": {
                "source": source,
                "identifiers": {
                    "email": "Ada.Lovelace@Example.com"
                    if source == "crm"
                    else "ada.lovelace@example.com"
                },
                "attributes": attributes,
                "observedAt": at,
            }
        }
    )
    (reply,) = client.call(f"{PROFILE}/IngestProfileFragment", request)
    answer: dict = json.loads(reply)
    return answer


def test_two_platforms_make_one_profile_whose_fields_say_where_and_why(
    suite: RunningSuite,
) -> None:
    with grpc.insecure_channel(suite.address("profile")) as channel:
        client = ReflectionClient(channel)
        crm = ingest(
            client,
            "crm",
            {
                "user": {"firstName": "Ada", "email": "ada.lovelace@example.com", "tags": ["vip"]},
                "account": {"companyName": "Analytical Engines"},
            },
            "2026-01-10T09:00:00Z",
        )
        shop = ingest(
            client,
            "ecommerce",
            {
                "user": {"firstName": "A. Lovelace", "tags": ["buyer"]},
                "customer": {"totalSpent": 1250.5, "orderCount": 4, "lastOrderDate": "2026-01-12"},
            },
            "2026-01-12T18:30:00Z",
        )
        assert crm["customerId"] == shop["customerId"]
        (raw,) = client.call(
            f"{PROFILE}/GetUnifiedProfile", json.dumps({"customerId": crm["customerId"]})
        )
        (synced,) = client.call(
            f"{PROFILE}/SyncProfile",
            json.dumps({"customerId": crm["customerId"], "source": "crm"}),
        )
    profile = json.loads(raw)["profile"]
    assert profile["attributes"]["user"] == {
        "firstName": "Ada",
        "email": "ada.lovelace@example.com",
        "tags": ["vip", "buyer"],
    }
    assert profile["attributes"]["customer"]["totalSpent"] == 1250.5
    provenance = profile["provenance"]
    assert set(provenance) == {
        "user.firstName",
        "user.email",
        "user.tags",
        "account.companyName",
        "customer.totalSpent",
        "customer.orderCount",
        "customer.lastOrderDate",
    }
    for path, field in provenance.items():
        assert field["source"] in ("crm", "ecommerce"), path
        assert field["strategy"] and field["reason"] and field["observedAt"], path
    assert provenance["user.firstName"]["source"] == "crm"
    assert provenance["user.firstName"]["strategy"] == "source_priority"
    assert provenance["user.tags"]["contributingSources"] == ["crm", "ecommerce"]
    assert provenance["customer.lastOrderDate"] == {
        "source": "ecommerce",
        "observedAt": "2026-01-12T18:30:00Z",
        "strategy": "most_recent",
        "reason": "newest observation (by observed time)",
    }
    # One result per target: Mailchimp is the only one the packaged mappings write to, and
    # its connector (on the local sandbox) took the member with every mapped field.
    (mailchimp,) = json.loads(synced)["results"]
    assert mailchimp["platform"] == "mailchimp" and mailchimp["syncedAt"]
    assert mailchimp.get("success") is True, mailchimp
    with grpc.insecure_channel(suite.address("mailchimp")) as channel:
        (fetched,) = ReflectionClient(channel).call(
            "cdp.connector.v1.ConnectorService/FetchCustomer",
            json.dumps({"customerId": crm["customerId"], "email": "ada.lovelace@example.com"}),
        )
    member = json.loads(fetched)
    assert member["found"] is True
    record = member["record"]
    assert record["email_address"] == "ada.lovelace@example.com"
    assert record["merge_fields"]["FNAME"] == "Ada"
    assert record["merge_fields"]["TOTSPENT"] == 1250.5
    assert record["merge_fields"]["ORDCOUNT"] == 4
    assert sorted(tag["name"] for tag in record["tags"]) == ["buyer", "vip"]

    shown = suite.cdp("profile", "show", crm["customerId"])
    assert shown.returncode == 0, shown.stderr
    first_name = next(
        line for line in shown.stdout.splitlines() if line.startswith("user.firstName")
    )
    assert '"Ada"' in first_name and "crm" in first_name and "ranks 1" in first_name
