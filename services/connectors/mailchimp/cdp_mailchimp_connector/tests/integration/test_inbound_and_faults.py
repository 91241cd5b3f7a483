from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.error
import urllib.request
from typing import Any

import mailchimp_marketing
import pytest
from mailchimp_sandbox.settings import SANDBOX_API_KEY
from mailchimp_sandbox.webhooks import signature

from cdp.connector.v1 import connector_pb2
from cdp_mailchimp_connector.service_layer.inbound import verify_signature
from cdp_testing import wait_until

from .conftest import (
    LIST_ID,
    Peers,
    RunningConnector,
    RunningSandbox,
    connector_settings,
    run_connector,
)
from .test_connector import md5, profile, push


async def register_webhook(sandbox: RunningSandbox, url: str, *, api: bool = True) -> str:
    """Registers `url` through the real SDK, as an operator would; returns its secret."""

    def create() -> Any:
        client = mailchimp_marketing.Client()
        client.set_config({"api_key": SANDBOX_API_KEY})
        client.api_client.host = f"{sandbox.url}/3.0"
        return client.lists.create_list_webhook(LIST_ID, {
            "url": url,
            "events": {"subscribe": True, "unsubscribe": True, "profile": True,
                       "cleaned": True, "upemail": True, "campaign": True},
            "sources": {"user": True, "admin": True, "api": api},
        })

    created = await asyncio.to_thread(create)
    return str(created["signing_secret"])


async def test_webhooks_from_the_sandbox_come_back_as_events_and_fragments(
    connector: RunningConnector, sandbox: RunningSandbox, peers: Peers
) -> None:
    await register_webhook(sandbox, connector.webhook_url)
    await connector.stub.PushProfiles(push(profile(1, merge_fields={"FNAME": "Ada"})))
    simulate = f"/_sandbox/lists/{LIST_ID}/simulate"
    await sandbox.control("POST", simulate, {"type": "unsubscribe",
                                             "email": "person1@example.com"})
    await sandbox.control("POST", simulate, {"type": "cleaned", "email": "person1@example.com"})
    await wait_until(
        lambda: {"email.subscribed", "email.unsubscribed", "email.bounced"}
        <= {e.type for e in peers.router.events},
        timeout=20, message="webhook events at the router",
    )
    (unsubscribed,) = peers.router.of_type("email.unsubscribed")
    assert unsubscribed.source == "mailchimp"
    assert unsubscribed.identifiers.email == "person1@example.com"
    assert unsubscribed.properties["action"] == "unsub"
    assert peers.router.of_type("email.bounced")[0].properties["reason"] == "hard"
    await wait_until(lambda: any(
        f.attributes.fields["user"].struct_value.fields["firstName"].string_value == "Ada"
        for f in peers.profiles.fragments if "user" in f.attributes.fields
    ), timeout=20, message="subscribe fragment at the profile service")


async def test_inbound_items_wait_while_the_router_is_down_and_arrive_once_it_is_back(
    connector: RunningConnector, sandbox: RunningSandbox, peers: Peers
) -> None:
    peers.router.fail_calls = 3
    await register_webhook(sandbox, connector.webhook_url)
    await connector.stub.PushProfiles(push(profile(1), profile(2)))
    await wait_until(lambda: len(peers.router.of_type("email.subscribed")) == 2, timeout=30,
                     message="both subscribe events delivered after the router recovered")
    assert peers.router.fail_calls == 0
    assert len({e.id for e in peers.router.events}) == len(peers.router.events)


async def test_signed_webhooks_are_checked_and_a_forged_one_is_refused(
    database_url: str, sandbox: RunningSandbox, peers: Peers, telemetry: Any
) -> None:
    secret = "s3cret-for-test"
    settings = connector_settings(database_url, sandbox, peers)
    from dataclasses import replace

    from cdp_settings import Secret

    settings = replace(settings, mailchimp=replace(settings.mailchimp,
                                                   webhook_secret=Secret(secret)))
    body = ("type=unsubscribe&fired_at=2026-12-04+10%3A00%3A00&data%5Baction%5D=unsub"
            "&data%5Bid%5D=abc&data%5Blist_id%5D=c0ffee0001&data%5Bemail%5D=ada%40example.com")

    def post(headers: dict[str, str]) -> int:
        request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded", **headers})
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return error.code

    async with run_connector(settings, telemetry) as running:
        url = running.webhook_url
        now = int(time.time())
        forged = signature("wrong", body, now)
        good = signature(secret, body, now)
        assert verify_signature(secret, good, body, now)
        assert await asyncio.to_thread(post, {}) == 401
        assert await asyncio.to_thread(post, {"X-Mailchimp-Signature": forged}) == 401
        assert await asyncio.to_thread(post, {"X-Mailchimp-Signature": good}) == 200
        await wait_until(lambda: len(peers.router.of_type("email.unsubscribed")) == 1,
                         timeout=20, message="the signed webhook's event")


async def test_opens_and_clicks_are_pulled_incrementally_into_events(
    connector: RunningConnector, sandbox: RunningSandbox, peers: Peers, database_url: str,
    telemetry: Any,
) -> None:
    await connector.stub.PushProfiles(push(profile(1)))
    campaign = await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                                     {"type": "campaign", "subject": "Hello"})
    activity = f"/_sandbox/lists/{LIST_ID}/activity"
    await sandbox.control("POST", activity, {"email": "person1@example.com",
                                             "campaign_id": campaign["id"], "action": "open"})
    await sandbox.control("POST", activity, {"email": "person1@example.com",
                                             "campaign_id": campaign["id"], "action": "click",
                                             "url": "https://shop.example/sale"})
    settings = connector_settings(database_url, sandbox, peers, activity_interval_seconds=0.2)
    async with run_connector(settings, telemetry) as _running:
        await wait_until(lambda: {"email.opened", "email.clicked"} <=
                         {e.type for e in peers.router.events}, timeout=20,
                         message="activity events")
        route = "GET /reports/{}/email-activity"
        target = sandbox.state.stats.by_route[route] + 2
        await wait_until(lambda: sandbox.state.stats.by_route[route] >= target, timeout=20,
                         message="two more pulls")
    (click,) = peers.router.of_type("email.clicked")
    assert click.properties["url"] == "https://shop.example/sale"
    assert click.properties["campaign_id"] == campaign["id"]
    assert len(peers.router.of_type("email.opened")) == 1


async def test_faults_cost_retries_but_lose_and_duplicate_nothing(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await sandbox.control("POST", "/_sandbox/faults", {
        "rate_429": 0.15, "rate_5xx": 0.05, "rate_bodiless_429": 0.05,
        "rate_bodiless_403": 0.03, "rate_html_502": 0.02, "rate_drop": 0.02,
        "errors_after_apply": True, "latency_ms": 20, "seed": 7,
    })
    profiles = [profile(n) for n in range(3000)]
    response = await connector.stub.PushProfiles(push(*profiles))
    assert all(r.success for r in response.results), [r.error for r in response.results
                                                      if not r.success][:3]
    assert len(sandbox.audience.members) == 3000
    assert {m["email_address"] for m in sandbox.audience.members.values()} == {
        f"person{n}@example.com" for n in range(3000)
    }
    stats = sandbox.state.stats
    assert sum(stats.injected.values()) > 0
    assert stats.peak_in_flight <= 10


async def test_many_calls_at_once_never_exceed_ten_in_flight(
    connector: RunningConnector, sandbox: RunningSandbox
) -> None:
    await sandbox.control("POST", "/_sandbox/faults", {"latency_ms": 50})
    await connector.stub.PushProfiles(push(*(profile(n) for n in range(40))))
    from cdp.common.v1 import common_pb2
    from cdp.events.v1 import events_pb2

    events = [events_pb2.Event(id=f"e-{n}", type="page.viewed",
                               identifiers=common_pb2.Identifiers(email=f"person{n}@example.com"))
              for n in range(40)]
    response = await connector.stub.DeliverEvents(
        connector_pb2.DeliverEventsRequest(events=events)
    )
    assert all(r.success for r in response.results)
    assert sandbox.state.stats.peak_in_flight == 10
    assert sandbox.state.stats.injected.get("over_limit_429", 0) == 0


async def test_an_outage_opens_the_circuit_records_failures_and_retry_recovers_them(
    database_url: str, sandbox: RunningSandbox, peers: Peers, telemetry: Any
) -> None:
    settings = connector_settings(database_url, sandbox, peers, breaker_failures=3,
                                  breaker_reset_seconds=0.5, retry_attempts=2)
    async with run_connector(settings, telemetry) as running:
        await running.stub.PushProfiles(push(profile(0)))
        await sandbox.control("POST", "/_sandbox/faults", {"rate_5xx": 1.0})
        response = await running.stub.PushProfiles(push(*(profile(n) for n in range(1, 1501))))
        assert not any(r.success for r in response.results)
        assert not any(r.permanent for r in response.results)
        health = await running.stub.GetConnectorHealth(connector_pb2.GetConnectorHealthRequest())
        assert health.status == connector_pb2.CONNECTION_STATUS_DOWN
        assert health.circuit_state == "open"
        failed = await running.stub.ListFailedOperations(
            connector_pb2.ListFailedOperationsRequest(limit=10)
        )
        assert failed.total == 1500 and len(failed.operations) == 10
        assert all("example.com" not in o.error for o in failed.operations)

        await sandbox.control("POST", "/_sandbox/faults", {"rate_5xx": 0.0})
        async def circuit_closed() -> bool:
            # Once the open period is over, the health ping is the probe that closes it.
            health = await running.stub.GetConnectorHealth(
                connector_pb2.GetConnectorHealthRequest()
            )
            return health.circuit_state == "closed"

        await wait_until(circuit_closed, timeout=10, interval=0.1, message="circuit closed")
        retried = await running.stub.RetryFailedOperations(
            connector_pb2.RetryFailedOperationsRequest()
        )
        assert (retried.retried, retried.succeeded) == (1500, 1500)
        left = await running.stub.ListFailedOperations(connector_pb2.ListFailedOperationsRequest())
        assert left.total == 0
    assert len(sandbox.audience.members) == 1501
    assert md5("person1500@example.com") in sandbox.audience.members


@pytest.mark.parametrize("trigger", ["rate_bodiless_403", "rate_bodiless_429"])
async def test_a_bodiless_error_reply_is_treated_as_the_error_it_is(
    database_url: str, sandbox: RunningSandbox, peers: Peers, telemetry: Any, trigger: str
) -> None:
    settings = connector_settings(database_url, sandbox, peers, retry_attempts=2)
    async with run_connector(settings, telemetry) as running:
        await running.stub.PushProfiles(push(profile(0)))
        await sandbox.control("POST", "/_sandbox/faults", {trigger: 1.0})
        response = await running.stub.PushProfiles(push(profile(1)))
        assert not response.results[0].success and not response.results[0].permanent
        assert trigger[-3:] in response.results[0].error
    assert hashlib.md5(b"person1@example.com").hexdigest() not in sandbox.audience.members
