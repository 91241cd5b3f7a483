from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from aiohttp import web
from mailchimp_marketing.api_client import ApiClientError
from mailchimp_sandbox.webhooks import signature

from cdp_testing import wait_until

from .conftest import LIST_ID, RunningSandbox


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def put(email: str, **body: Any) -> Any:
    return lambda c: c.lists.set_list_member(LIST_ID, md5(email), {"email_address": email,
                                                                   **body})


async def refused(sandbox: RunningSandbox, operation: Any) -> dict[str, Any]:
    with pytest.raises(ApiClientError) as caught:
        await sandbox.call(operation)
    text = caught.value.text
    # problem+json is not "application/json" to the SDK: the text arrives as a JSON string.
    assert isinstance(text, str)
    problem: dict[str, Any] = json.loads(text)
    assert problem["status"] == caught.value.status_code
    return problem


async def test_status_if_new_applies_only_when_the_member_is_new(sandbox: RunningSandbox) -> None:
    await sandbox.call(put("ada@example.com", status_if_new="subscribed"))
    await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                          {"type": "unsubscribe", "email": "ada@example.com"})
    again = await sandbox.call(put("ada@example.com", status_if_new="subscribed"))
    assert again["status"] == "unsubscribed"


async def test_resubscribing_a_self_unsubscribed_or_cleaned_member_is_a_compliance_error(
    sandbox: RunningSandbox,
) -> None:
    for email, change in (("u@example.com", "unsubscribe"), ("c@example.com", "cleaned")):
        await sandbox.call(put(email, status_if_new="subscribed"))
        await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                              {"type": change, "email": email})
        problem = await refused(sandbox, put(email, status="subscribed"))
        assert problem["title"] == "Member In Compliance State"
    pending = await sandbox.call(put("u@example.com", status="pending"))
    assert pending["status"] == "pending"


async def test_a_permanently_deleted_email_cannot_be_re_added(sandbox: RunningSandbox) -> None:
    await sandbox.call(put("gone@example.com", status_if_new="subscribed"))
    deleted = await sandbox.call(
        lambda c: c.lists.delete_list_member_permanent(LIST_ID, md5("gone@example.com"))
    )
    assert isinstance(deleted, requests.Response) and deleted.status_code == 204
    problem = await refused(sandbox, put("gone@example.com", status_if_new="subscribed"))
    assert problem["title"] == "Forgotten Email Not Subscribed"


async def test_archiving_is_refused_for_pending_members_and_undone_by_an_upsert(
    sandbox: RunningSandbox,
) -> None:
    await sandbox.call(put("p@example.com", status_if_new="pending"))
    problem = await refused(sandbox, lambda c: c.lists.delete_list_member(LIST_ID,
                                                                          md5("p@example.com")))
    assert problem["status"] == 405
    await sandbox.call(put("a@example.com", status_if_new="subscribed"))
    await sandbox.call(lambda c: c.lists.delete_list_member(LIST_ID, md5("a@example.com")))
    back = await sandbox.call(put("a@example.com", status_if_new="subscribed"))
    assert back["status"] == "subscribed"


async def test_merge_fields_are_validated_by_type_and_required_ness(
    sandbox: RunningSandbox,
) -> None:
    await sandbox.call(lambda c: c.lists.add_list_merge_field(
        LIST_ID, {"name": "Birthday", "type": "birthday", "tag": "BDAY", "required": True}))
    missing = await refused(sandbox, put("m@example.com", status_if_new="subscribed"))
    assert missing["errors"] == [{"field": "BDAY", "message": "Please enter a value"}]
    wrong = await refused(sandbox, put("m@example.com", status_if_new="subscribed",
                                       merge_fields={"BDAY": "1999-01-01"}))
    assert wrong["errors"][0]["field"] == "BDAY"
    skipped = await sandbox.call(lambda c: c.lists.set_list_member(
        LIST_ID, md5("m@example.com"), {"email_address": "m@example.com",
                                        "status_if_new": "subscribed"},
        skip_merge_validation=True))
    assert skipped["merge_fields"]["BDAY"] == ""
    too_long = await refused(sandbox, lambda c: c.lists.add_list_merge_field(
        LIST_ID, {"name": "x", "type": "text", "tag": "WAYTOOLONGTAG"}))
    assert too_long["errors"][0]["field"] == "tag"
    generated = await sandbox.call(lambda c: c.lists.add_list_merge_field(
        LIST_ID, {"name": "Favourite colour", "type": "text"}))
    assert generated["tag"] == "FAVOURITEC"


async def test_batch_subscribe_reports_existing_members_without_update_existing(
    sandbox: RunningSandbox,
) -> None:
    await sandbox.call(put("old@example.com", status_if_new="subscribed"))
    members = [{"email_address": e, "status_if_new": "subscribed"}
               for e in ("old@example.com", "new@example.com", "broken")]
    result = await sandbox.call(lambda c: c.lists.batch_list_members(
        LIST_ID, {"members": members, "update_existing": False}))
    assert [m["email_address"] for m in result["new_members"]] == ["new@example.com"]
    assert [e["error_code"] for e in result["errors"]] == ["ERROR_CONTACT_EXISTS",
                                                           "ERROR_GENERIC"]
    too_many = await refused(sandbox, lambda c: c.lists.batch_list_members(
        LIST_ID, {"members": [{"email_address": f"x{n}@example.com", "status_if_new":
                               "subscribed"} for n in range(501)]}))
    assert too_many["status"] == 400


async def test_tags_and_static_segments_share_one_namespace(sandbox: RunningSandbox) -> None:
    await sandbox.call(put("t@example.com", status_if_new="subscribed"))
    await sandbox.call(lambda c: c.lists.update_list_member_tags(
        LIST_ID, md5("t@example.com"), {"tags": [{"name": "vip", "status": "active"}]}))
    found = await sandbox.call(lambda c: c.lists.tag_search(LIST_ID, name="vip"))
    segments = await sandbox.call(lambda c: c.lists.list_segments(LIST_ID, type="static"))
    assert [t["id"] for t in found["tags"]] == [s["id"] for s in segments["segments"]]
    clash = await refused(sandbox, lambda c: c.lists.create_segment(
        LIST_ID, {"name": "vip", "static_segment": []}))
    assert clash["status"] == 400


class Receiver:
    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, list[str]], str, str]] = []
        self.validator_gets = 0


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    state = Receiver()

    async def get(request: web.Request) -> web.Response:
        state.validator_gets += 1
        return web.Response(text="ok")

    async def post(request: web.Request) -> web.Response:
        body = await request.text()
        state.posts.append((parse_qs(body), request.headers.get("X-Mailchimp-Signature", ""),
                            body))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/hook", get)
    app.router.add_post("/hook", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield state, f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def test_webhooks_fire_form_encoded_signed_and_filtered_by_source(
    sandbox: RunningSandbox, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    hook = await sandbox.call(lambda c: c.lists.create_list_webhook(LIST_ID, {
        "url": url, "events": {"subscribe": True, "unsubscribe": True},
        "sources": {"user": True, "admin": True, "api": False}}))
    assert state.validator_gets == 1
    await sandbox.call(put("w@example.com", status_if_new="subscribed", merge_fields={
        "FNAME": "Wil"}))
    await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                          {"type": "unsubscribe", "email": "w@example.com"})
    await wait_until(lambda: len(state.posts) >= 1, message="the unsubscribe webhook")
    ((form, signed, body),) = state.posts  # the API-made subscribe did not fire: api is off
    assert form["type"] == ["unsubscribe"] and form["data[email]"] == ["w@example.com"]
    assert form["data[merges][FNAME]"] == ["Wil"]
    assert len(form["fired_at"][0]) == len("2026-12-04 10:00:00")
    stamp = int(signed.split(",")[0].removeprefix("t="))
    assert signed == signature(hook["signing_secret"], body, stamp)


async def test_more_than_ten_calls_at_once_get_429(sandbox: RunningSandbox) -> None:
    await sandbox.control("POST", "/_sandbox/faults", {"latency_ms": 300})
    client = sandbox.client()

    def ping() -> int:
        try:
            client.ping.get()
            return 200
        except ApiClientError as error:
            return int(error.status_code or 0)

    # Threads of its own: the default pool has fewer than 14 workers on a small machine.
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=14) as pool:
        statuses = await asyncio.gather(*(loop.run_in_executor(pool, ping) for _ in range(14)))
    assert statuses.count(200) == 10 and statuses.count(429) == 4


async def test_fault_switches_produce_the_replies_the_sdk_mishandles(
    sandbox: RunningSandbox,
) -> None:
    await sandbox.control("POST", "/_sandbox/faults", {"rate_bodiless_403": 1.0})
    bodiless = await sandbox.call(lambda c: c.ping.get())
    assert isinstance(bodiless, requests.Response) and bodiless.status_code == 403
    await sandbox.control("POST", "/_sandbox/faults", {"rate_bodiless_403": 0.0,
                                                       "rate_html_502": 1.0})
    with pytest.raises(ApiClientError) as html:
        await sandbox.call(lambda c: c.ping.get())
    assert html.value.status_code == 502 and "<html>" in html.value.text
    await sandbox.control("POST", "/_sandbox/faults", {"rate_html_502": 0.0, "rate_drop": 1.0})
    with pytest.raises(ApiClientError) as dropped:
        await sandbox.call(lambda c: c.ping.get())
    assert dropped.value.status_code is None
    assert isinstance(dropped.value.text, requests.ConnectionError)


async def test_a_failing_member_answers_503_while_other_members_are_served(
    sandbox: RunningSandbox,
) -> None:
    await sandbox.call(put("ok@example.com", status_if_new="subscribed"))
    await sandbox.call(put("stuck@example.com", status_if_new="subscribed"))
    await sandbox.control("POST", "/_sandbox/faults",
                          {"failing_members": [md5("stuck@example.com")]})
    event = {"name": "page_viewed", "properties": {}}
    problem = await refused(sandbox, lambda c: c.lists.create_list_member_event(
        LIST_ID, md5("stuck@example.com"), event))
    assert problem["status"] == 503
    await sandbox.call(lambda c: c.lists.create_list_member_event(
        LIST_ID, md5("ok@example.com"), event))
    with pytest.raises(Exception, match="400"):
        await sandbox.control("POST", "/_sandbox/faults", {"failing_members": "everyone"})
    await sandbox.control("POST", "/_sandbox/faults", {"failing_members": []})
    await sandbox.call(lambda c: c.lists.create_list_member_event(
        LIST_ID, md5("stuck@example.com"), event))


async def test_a_wrong_api_key_is_refused_and_unknown_switches_are_named(
    sandbox: RunningSandbox,
) -> None:
    with pytest.raises(ApiClientError) as caught:
        await sandbox.call(lambda c: c.ping.get(), api_key="wrong-us1")
    assert caught.value.status_code == 401
    with pytest.raises(Exception, match="400"):
        await sandbox.control("POST", "/_sandbox/faults", {"rate_teleport": 1})
