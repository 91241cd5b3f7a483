"""Every endpoint the sandbox serves, driven through the real SDK, checked against Mailchimp's
official OpenAPI description: each request body against the operation's `requestBody`
schema, each reply against the schema of its status (or `default` for errors)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mailchimp_marketing.api_client import ApiClientError
from mailchimp_sandbox.spec import extract
from openapi_schema_validator import OAS31Validator

from .conftest import LIST_ID, RunningSandbox

SUBSET = json.loads(extract.SUBSET.read_text())
SHARED_SPEC = Path("/work/shared/specs/mailchimp-marketing-openapi.json")


def official_spec() -> Path | None:
    configured = os.environ.get("MAILCHIMP_OPENAPI_SPEC")
    for candidate in (Path(configured) if configured else None, SHARED_SPEC):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def template_regex(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "/?$")


TEMPLATES = sorted(
    ((template_regex(path), path) for path in SUBSET["paths"]),
    # Literal segments beat parameters: /lists/{id}/tag-search before /lists/{id}/{...}.
    key=lambda pair: pair[1].count("{"),
)


def operation_of(method: str, path: str) -> tuple[str, dict[str, Any]]:
    for pattern, template in TEMPLATES:
        if pattern.match(path) and method.lower() in SUBSET["paths"][template]:
            return template, SUBSET["paths"][template][method.lower()]
    raise AssertionError(f"{method} {path} is served but not in the official description")


def check(schema: dict[str, Any], document: Any, where: str) -> list[str]:
    root = {**schema, "components": SUBSET["components"]}
    validator = OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)
    return [f"{where}: {e.json_path}: {e.message[:200]}" for e in validator.iter_errors(document)]


def schema_of(content: dict[str, Any]) -> dict[str, Any] | None:
    for media in ("application/json", "application/problem+json"):
        if media in content:
            return dict(content[media]["schema"])
    return None


def exercise(sandbox: RunningSandbox) -> None:
    """Calls every operation the sandbox serves, through the SDK as the connector does."""
    c = sandbox.client()
    email = "conformance@example.com"
    member = hashlib.md5(email.encode()).hexdigest()
    c.ping.get()
    c.lists.get_all_lists(count=5)
    other = c.lists.create_list({
        "name": "Second", "permission_reminder": "You signed up.", "email_type_option": False,
        "contact": {"company": "C", "address1": "A", "city": "C", "state": "S", "zip": "1",
                    "country": "US"},
        "campaign_defaults": {"from_name": "F", "from_email": "f@example.com", "subject": "S",
                              "language": "en"},
    })
    c.lists.get_list(LIST_ID, include_total_contacts=True)
    c.lists.add_list_merge_field(LIST_ID, {"name": "Plan", "type": "dropdown", "tag": "PLAN",
                                           "options": {"choices": ["free", "pro"]}})
    fields = c.lists.get_list_merge_fields(LIST_ID, count=100)
    plan = next(f for f in fields["merge_fields"] if f["tag"] == "PLAN")
    c.lists.get_list_merge_field(LIST_ID, plan["merge_id"])
    c.lists.update_list_merge_field(LIST_ID, plan["merge_id"], {"name": "Plan name"})
    c.lists.set_list_member(LIST_ID, member, {"email_address": email, "status_if_new":
                                              "subscribed", "merge_fields": {"FNAME": "Ada",
                                                                             "PLAN": "pro"}})
    c.lists.add_list_member(LIST_ID, {"email_address": "second@example.com",
                                      "status": "subscribed", "tags": ["new"]})
    c.lists.batch_list_members(LIST_ID, {"members": [
        {"email_address": "third@example.com", "status_if_new": "subscribed"},
        {"email_address": "bad-address", "status_if_new": "subscribed"},
    ], "update_existing": True})
    c.lists.get_list_members_info(LIST_ID, count=10, status="subscribed")
    c.lists.get_list_member(LIST_ID, member)
    c.lists.update_list_member(LIST_ID, member, {"merge_fields": {"LNAME": "Lovelace"}})
    c.lists.update_list_member_tags(LIST_ID, member, {"tags": [{"name": "vip",
                                                                 "status": "active"}]})
    c.lists.get_list_member_tags(LIST_ID, member)
    c.lists.tag_search(LIST_ID, name="vi")
    c.lists.create_list_member_event(LIST_ID, member, {"name": "order_completed",
                                                       "properties": {"total": "42"}})
    c.lists.get_list_member_events(LIST_ID, member)
    c.lists.get_list_member_activity(LIST_ID, member)
    segment = c.lists.create_segment(LIST_ID, {"name": "Static one", "static_segment": [email]})
    c.lists.list_segments(LIST_ID, type="static")
    c.lists.get_segment(LIST_ID, segment["id"])
    c.lists.update_segment(LIST_ID, segment["id"], {"name": "Static one renamed"})
    c.lists.batch_segment_members({"members_to_add": ["second@example.com", "nobody@x.com"],
                                   "members_to_remove": []}, LIST_ID, segment["id"])
    c.lists.get_segment_members_list(LIST_ID, segment["id"])
    c.lists.remove_segment_member(LIST_ID, segment["id"],
                                  hashlib.md5(b"second@example.com").hexdigest())
    c.lists.delete_segment(LIST_ID, segment["id"])
    webhook = c.lists.create_list_webhook(LIST_ID, {"url": f"{sandbox.url}/_sandbox/health",
                                                    "events": {"subscribe": True},
                                                    "sources": {"api": True}})
    c.lists.get_list_webhooks(LIST_ID)
    c.lists.get_list_webhook(LIST_ID, webhook["id"])
    c.lists.delete_list_webhook(LIST_ID, webhook["id"])
    batch = c.batches.start({"operations": [
        {"method": "GET", "path": f"/lists/{LIST_ID}/members/{member}", "operation_id": "1"},
    ]})
    c.batches.status(batch["id"])
    c.batches.list()
    c.campaigns.list(list_id=LIST_ID)
    c.lists.delete_list_member(LIST_ID, hashlib.md5(b"third@example.com").hexdigest())
    c.lists.delete_list_member_permanent(LIST_ID, member)
    c.lists.delete_list_merge_field(LIST_ID, plan["merge_id"])
    del other


async def test_every_endpoint_speaks_the_shapes_of_the_official_description(
    sandbox: RunningSandbox,
) -> None:
    exchanges: list[tuple[str, str, bytes, int, bytes]] = []
    sandbox.state.recorder = lambda *exchange: exchanges.append(exchange)
    await asyncio.to_thread(exercise, sandbox)
    campaign = await sandbox.control("POST", f"/_sandbox/lists/{LIST_ID}/simulate",
                                     {"type": "campaign"})
    await sandbox.call(lambda c: c.campaigns.get(campaign["id"]))
    await sandbox.call(lambda c: c.reports.get_email_activity_for_campaign(campaign["id"]))
    batches = await sandbox.call(lambda c: c.batches.list())
    await sandbox.call(lambda c: c.batches.delete_request(batches["batches"][0]["id"]))
    with pytest.raises(ApiClientError):  # an error reply is checked too
        await sandbox.call(lambda c: c.lists.get_list_member(LIST_ID, "0" * 32))

    problems: list[str] = []
    served: set[tuple[str, str]] = set()
    for method, path, request_body, status, response_body in exchanges:
        template, operation = operation_of(method, path)
        where = f"{method} {template} -> {status}"
        if request_body.strip() and request_body.strip() != b"null":
            schema = schema_of(operation.get("requestBody", {}).get("content", {}))
            assert schema is not None, f"{where}: a body the operation does not take"
            problems += check(schema, json.loads(request_body), f"{where} request")
        reply = operation["responses"].get(str(status)) or operation["responses"]["default"]
        schema = schema_of(reply.get("content", {}))
        if schema is None:
            assert response_body == b"", f"{where}: a body where the description has none"
        else:
            problems += check(schema, json.loads(response_body), f"{where} response")
        if status < 400:
            served.add((method.lower(), template))
    assert problems == [], "\n".join(problems)
    assert served == set(extract.OPERATIONS)


def test_the_committed_subset_is_the_extraction_of_the_official_file() -> None:
    provenance = SUBSET["x-provenance"]
    assert provenance["repository"] == "mailchimp/fern-marketing-api-docs"
    assert {method for path in SUBSET["paths"].values() for method in path} <= {
        "get", "post", "put", "patch", "delete"}
    spec = official_spec()
    if spec is not None:
        assert hashlib.sha256(spec.read_bytes()).hexdigest() == provenance["sha256"]
        assert extract.extract_file(spec) == extract.SUBSET.read_text()
    else:
        # Without the official file, the subset must at least be complete for what it lists.
        assert set(extract.OPERATIONS) == {
            (method, path) for path, ops in SUBSET["paths"].items() for method in ops
        }


async def test_batch_results_are_a_gzipped_tar_of_json_arrays(sandbox: RunningSandbox) -> None:
    batch = await sandbox.call(lambda c: c.batches.start({"operations": [
        {"method": "PUT", "path": f"/lists/{LIST_ID}/members/{hashlib.md5(b'b@x.com').hexdigest()}",
         "operation_id": "put-1",
         "body": json.dumps({"email_address": "b@x.com", "status_if_new": "subscribed"})},
        {"method": "GET", "path": f"/lists/{LIST_ID}/members/{'f' * 32}", "operation_id": "get-2"},
    ]}))
    from cdp_testing import eventually

    finished = await eventually(
        lambda: sandbox.call(lambda c: c.batches.status(batch["id"])),
        lambda status: status["status"] == "finished", message="batch finished",
    )
    assert (finished["total_operations"], finished["errored_operations"]) == (2, 1)

    def download() -> bytes:
        with urllib.request.urlopen(finished["response_body_url"], timeout=10) as reply:
            return bytes(reply.read())

    archive = tarfile.open(fileobj=io.BytesIO(await asyncio.to_thread(download)), mode="r:gz")
    results = [r for m in archive.getmembers() if m.isfile()
               for r in json.loads(archive.extractfile(m).read())]  # type: ignore[union-attr]
    by_id = {r["operation_id"]: r for r in results}
    assert by_id["put-1"]["status_code"] == 200
    assert json.loads(by_id["put-1"]["response"])["email_address"] == "b@x.com"
    assert by_id["get-2"]["status_code"] == 404
