"""The HTTP tracking API driven by the real Segment and RudderStack SDKs, unchanged."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from cdp.events.v1 import events_pb2
from cdp_testing import eventually

from .conftest import WRITE_KEY, Peers, Router


async def stored(router: Router, **filters: Any) -> list[events_pb2.Event]:
    request = events_pb2.ListEventsRequest(filter=events_pb2.EventFilter(**filters))
    return [r.event async for r in router.stub.ListEvents(request)]


def send_with_segment(host: str, errors: list[Any]) -> None:
    client = SegmentClient(write_key=WRITE_KEY, host=host, sync_mode=True,
                           on_error=lambda error, batch: errors.append(error))
    client.identify("user-42", {"email": "ada@example.com", "plan": "pro"},
                    anonymous_id="anon-9")
    client.track("user-42", "Order Completed", {"total": 42.5, "order_id": "o-1"},
                 context={"ip": "203.0.113.7", "page": {"url": "https://shop.example/cart"},
                          "campaign": {"source": "newsletter", "medium": "email"}})
    client.page("user-42", "Docs", "Getting started", {"path": "/docs"})
    client.alias("anon-9", "user-42")
    client.flush()


def send_with_rudderstack(host: str, errors: list[Any]) -> None:
    client = RudderClient(write_key=WRITE_KEY, host=host, sync_mode=True, gzip=True,
                          on_error=lambda error, batch: errors.append(error))
    client.track("user-7", "Product Viewed", {"sku": "SKU-1", "price": 9.99})
    client.screen("user-7", "Home", properties={"variant": "b"})
    client.group("user-7", "acme-inc", {"name": "Acme"})
    client.flush()


async def test_segment_sdk_events_arrive_as_unified_events(router: Router, peers: Peers) -> None:
    errors: list[Any] = []
    await asyncio.to_thread(send_with_segment, router.http_url, errors)
    assert errors == []
    events = await eventually(lambda: stored(router), lambda found: len(found) == 4,
                              message="stored events")
    by_type = {e.type: e for e in events}
    assert set(by_type) == {"user.identified", "order.completed", "page.viewed", "user.aliased"}
    order = by_type["order.completed"]
    assert order.source == "web" and order.properties["total"] == 42.5
    assert order.context.ip == "203.0.113.7"
    assert order.context.page_url == "https://shop.example/cart"
    assert order.context.campaign.source == "newsletter"
    identify = by_type["user.identified"]
    assert identify.properties["plan"] == "pro"
    linked = [(s.user_id, s.anonymous_id, s.email) for s in peers.identity.seen]
    assert ("user-42", "anon-9", "ada@example.com") in linked  # identify ties them together
    assert ("user-42", "anon-9", "") in linked  # alias: previousId -> userId
    assert by_type["page.viewed"].properties["name"] == "Getting started"


async def test_rudderstack_sdk_with_gzip_is_accepted_too(router: Router) -> None:
    errors: list[Any] = []
    await asyncio.to_thread(send_with_rudderstack, router.http_url, errors)
    assert errors == []
    events = await eventually(lambda: stored(router), lambda found: len(found) == 3,
                              message="stored events")
    assert {e.type for e in events} == {"product.viewed", "screen.viewed", "group.identified"}


async def post(router: Router, path: str, body: Any, *, key: str = WRITE_KEY,
               gzipped: bool = False) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json",
               "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    if gzipped:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    async with aiohttp.ClientSession() as session, session.post(
            f"{router.http_url}{path}", data=data, headers=headers) as response:
        return response.status, await response.json()


def track(message_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Cart Updated", "userId": "u-1",
            "messageId": message_id, "timestamp": datetime.now(UTC).isoformat(), **extra}


async def test_wrong_write_keys_are_refused(router: Router) -> None:
    status, body = await post(router, "/v1/track", track("k-1"), key="not-the-key")
    assert status == 401 and body["success"] is False
    assert await stored(router) == []


async def test_bad_messages_are_named_and_good_ones_in_the_same_batch_kept(
    router: Router,
) -> None:
    status, body = await post(router, "/v1/batch", {"batch": [
        track("good-1"),
        {"type": "track", "userId": "u-1", "messageId": "no-name"},
        track("bad-time", timestamp="yesterday-ish"),
        {"type": "explode", "messageId": "what"},
        track("good-1"),
    ]})
    assert status == 200
    assert body["accepted"] == 1 and body["duplicates"] == 1
    fields = [v["field"] for r in body["rejected"] for v in r["violations"]]
    assert fields == ["batch[1].event", "batch[2].timestamp", "batch[3].type"]
    status, body = await post(router, "/v1/batch", {"batch": [{"type": "explode"}]})
    assert status == 400
    status, body = await post(router, "/v1/track", {"event": "X Y", "timestamp": "nope"})
    assert status == 400 and body["rejected"][0]["violations"][0]["field"] == "timestamp"


async def test_oversized_and_malformed_bodies_get_clear_errors(router: Router) -> None:
    huge = track(str(uuid.uuid4()), properties={"x": "y" * 600_000})
    status, body = await post(router, "/v1/batch", {"batch": [huge]}, gzipped=True)
    assert status == 413 and "exceeds the limit" in body["message"]
    async with aiohttp.ClientSession() as session, session.post(
            f"{router.http_url}/v1/track", data=b"{not json",
            headers={"Authorization": "Basic " + base64.b64encode(
                f"{WRITE_KEY}:".encode()).decode()}) as response:
        assert response.status == 400
        assert (await response.json())["message"] == "body is not valid JSON"


async def test_identity_down_answers_503_so_sdks_retry(router: Router, peers: Peers) -> None:
    peers.identity.down = True
    status, body = await post(router, "/v1/track", track("retry-me"))
    assert status == 503 and body["success"] is False
    peers.identity.down = False
    status, _ = await post(router, "/v1/track", track("retry-me"))
    assert status == 200
