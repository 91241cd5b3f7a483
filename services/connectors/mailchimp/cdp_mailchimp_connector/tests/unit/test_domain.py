from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from cdp_mailchimp_connector.domain.events import event_name, string_properties, to_member_event
from cdp_mailchimp_connector.domain.inbound import (
    WebhookError,
    from_activity,
    from_webhook,
    parse_form,
)
from cdp_mailchimp_connector.domain.model import TagChange, subscriber_hash
from cdp_mailchimp_connector.domain.profiles import RawProfile, to_upserts
from cdp_mailchimp_connector.service_layer.inbound import verify_signature

TAGS = {"FNAME", "LNAME", "ADDRESS", "PHONE"}


def upsert(payload: dict[str, object], *, double_optin: bool = False) -> object:
    upserts, violations = to_upserts(
        [RawProfile("c-1", "Ada@Example.com", payload)], double_optin=double_optin,
        known_tags=TAGS,
    )
    assert violations == []
    return upserts[0]


def test_subscriber_hash_is_the_md5_of_the_lower_cased_email() -> None:
    import hashlib

    assert subscriber_hash(" Ada@Example.COM ") == hashlib.md5(b"ada@example.com").hexdigest()
    assert subscriber_hash("Ada@Example.COM") == subscriber_hash("ada@example.com")
    assert "server" not in subscriber_hash("observer@example.com")


def test_new_members_are_subscribed_or_pending_on_a_double_opt_in_audience() -> None:
    assert upsert({}).status_if_new == "subscribed"  # type: ignore[attr-defined]
    assert upsert({}, double_optin=True).status_if_new == "pending"  # type: ignore[attr-defined]
    pending = upsert({"status_if_new": "subscribed"}, double_optin=True)
    assert pending.status_if_new == "pending"  # type: ignore[attr-defined]
    assert upsert({"status_if_new": "transactional"}).status_if_new == "transactional"  # type: ignore[attr-defined]


def test_the_member_body_never_carries_status_unless_asked_explicitly() -> None:
    body = upsert({"merge_fields": {"FNAME": "Ada"}}).member_body()  # type: ignore[attr-defined]
    assert body == {"email_address": "Ada@Example.com", "status_if_new": "subscribed",
                    "merge_fields": {"FNAME": "Ada"}}
    explicit = upsert({"status": "unsubscribed"}).member_body()  # type: ignore[attr-defined]
    assert explicit["status"] == "unsubscribed"


def test_tags_may_be_names_or_name_and_status() -> None:
    tags = upsert({"tags": ["vip", {"name": "old", "status": "inactive"}]}).tags  # type: ignore[attr-defined]
    assert tags == (TagChange("vip", True), TagChange("old", False))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"merge_fields": {"fname": "x"}}, "profiles[0].payload.merge_fields.fname"),
        ({"merge_fields": {"TOOLONGTAG1": "x"}}, "profiles[0].payload.merge_fields.TOOLONGTAG1"),
        ({"merge_fields": {"LTV": 3}}, "profiles[0].payload.merge_fields.LTV"),
        ({"tags": [{"name": "", "status": "active"}]}, "profiles[0].payload.tags[0].name"),
        ({"status": "gone"}, "profiles[0].payload.status"),
        ({"vip": "yes"}, "profiles[0].payload.vip"),
        ({"favourite": 1}, "profiles[0].payload.favourite"),
    ],
)
def test_bad_payloads_are_named_by_field_path(payload: dict[str, object], field: str) -> None:
    _, violations = to_upserts([RawProfile("c-1", "ada@example.com", payload)],
                               double_optin=False, known_tags=TAGS)
    assert [v.field for v in violations] == [field]


def test_a_repeated_email_in_one_request_is_refused() -> None:
    _, violations = to_upserts(
        [RawProfile("c-1", "ada@example.com", {}), RawProfile("c-2", "ADA@example.com", {})],
        double_optin=False, known_tags=TAGS,
    )
    assert [(v.field, v.description) for v in violations] == [
        ("profiles[1].email", "is the same email as profiles[0]")
    ]


def test_event_names_and_properties_follow_mailchimp_rules() -> None:
    assert event_name("order.completed") == "order_completed"
    assert event_name("a") == ""
    assert len(event_name("x" * 40)) == 30
    assert string_properties({"n": 2.0, "f": 2.5, "b": True, "o": {"k": [1.0]}, "z": None}) == {
        "n": "2", "f": "2.5", "b": "true", "o": '{"k":[1]}', "z": ""}
    assert isinstance(to_member_event("e", "order.completed", "", {}, None), str)


def test_php_style_form_keys_become_nested_data() -> None:
    assert parse_form("a=1&data[merges][FNAME]=Ada&data[merges][ADDRESS][city]=X") == {
        "a": "1", "data": {"merges": {"FNAME": "Ada", "ADDRESS": {"city": "X"}}}}


def form(kind: str, **data: str) -> str:
    return urlencode({"type": kind, "fired_at": "2026-12-04 10:00:00",
                      **{f"data[{k}]": v for k, v in data.items()}})


def test_each_webhook_type_becomes_its_unified_events_and_fragments() -> None:
    subscribe = from_webhook(form("subscribe", id="h1", email="a@x.com", list_id="L",
                                  **{"merges][FNAME": "Ada"}))
    assert [e.type for e in subscribe.events] == ["email.subscribed"]
    assert subscribe.fragments[0].attributes["user"] == {"firstName": "Ada"}
    assert subscribe.events[0].timestamp == datetime(2026, 12, 4, 10, tzinfo=UTC)
    unsub = from_webhook(form("unsubscribe", action="unsub", reason="manual", email="a@x.com"))
    assert unsub.events[0].type == "email.unsubscribed"
    assert unsub.events[0].properties["reason"] == "manual"
    assert from_webhook(form("cleaned", reason="hard", email="a@x.com")).events[0].type == (
        "email.bounced")
    assert from_webhook(form("cleaned", reason="abuse", email="a@x.com")).events[0].type == (
        "email.complained")
    profile = from_webhook(form("profile", email="a@x.com", **{"merges][LTV": "9"}))
    assert profile.events == () and profile.fragments[0].attributes == {
        "mailchimp": {"merge_fields": {"LTV": "9"}}}
    upemail = from_webhook(form("upemail", old_email="a@x.com", new_email="b@x.com",
                                new_id="h2"))
    assert upemail.events[0].email == "a@x.com" and upemail.fragments[0].email == "b@x.com"
    campaign = from_webhook(form("campaign", id="cmp", subject="Hi", status="sent"))
    assert campaign.events[0].type == "email.campaign_sent"


def test_the_same_webhook_twice_gives_the_same_event_ids() -> None:
    body = form("unsubscribe", email="a@x.com")
    assert from_webhook(body).events[0].id == from_webhook(body).events[0].id
    assert from_webhook(body).events[0].id != from_webhook(form("unsubscribe",
                                                                email="b@x.com")).events[0].id


@pytest.mark.parametrize("body", ["type=nope&fired_at=2026-12-04+10:00:00&data[x]=1",
                                  "type=subscribe&fired_at=yesterday&data[x]=1",
                                  "type=subscribe&fired_at=2026-12-04+10:00:00"])
def test_bodies_that_are_not_mailchimp_webhooks_are_refused(body: str) -> None:
    with pytest.raises(WebhookError):
        from_webhook(body)


def test_activity_entries_become_opened_and_clicked_events_with_stable_ids() -> None:
    entry = {"email_address": "a@x.com", "email_id": "h", "activity": [
        {"action": "open", "timestamp": "2026-12-04T10:00:00+00:00"},
        {"action": "click", "timestamp": "2026-12-04T10:01:00+00:00", "url": "https://x"},
        {"action": "unknown", "timestamp": "2026-12-04T10:02:00+00:00"},
    ]}
    events = from_activity("cmp", "L", entry)
    assert [e.type for e in events] == ["email.opened", "email.clicked"]
    assert events[1].properties["url"] == "https://x"
    assert [e.id for e in events] == [e.id for e in from_activity("cmp", "L", entry)]


def test_signatures_are_checked_against_the_raw_body_and_the_clock() -> None:
    import hashlib
    import hmac

    body = "type=subscribe"
    digest = hmac.new(b"k", f"1000.{body}".encode(), hashlib.sha256).hexdigest()
    header = f"t=1000,v1={digest}"
    assert verify_signature("k", header, body, 1000.0)
    assert not verify_signature("k", header, body + "x", 1000.0)
    assert not verify_signature("other", header, body, 1000.0)
    assert not verify_signature("k", header, body, 1000.0 + 301)
    assert not verify_signature("k", "garbage", body, 1000.0)
