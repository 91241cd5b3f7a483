from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf import json_format

from cdp.profile.v1 import profile_pb2
from cdp_cli.demo import (
    DEFAULT_DATA_DIR,
    EXAMPLE_SEGMENTS,
    MARKER_FILE,
    DemoRefused,
    example_segment,
    outside_settings,
    prepare_data_dir,
    write_key_for_web,
)
from cdp_cli.demo_sample import (
    CrmContact,
    ShopCustomer,
    fragments_request,
    grpc_events,
    load_sample,
    member_email,
    resolve_request,
    tracking_batches,
)
from cdp_cli.main import build_parser, main
from cdp_cli.profile_commands import format_profile
from cdp_cli.runtime import LOCK_FILE, lock_data_dir

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)[-10:]


def test_demo_takes_its_own_data_folder_and_exit_from_the_command_line() -> None:
    parsed = build_parser().parse_args(["demo"])
    assert (parsed.data_dir, parsed.bin_dir, parsed.exit) == (None, None, False)
    assert DEFAULT_DATA_DIR == ".cdp-demo"
    parsed = build_parser().parse_args(
        ["demo", "--exit", "--data-dir", "/tmp/d", "--bin-dir", "dist/cdp"])
    assert (parsed.data_dir, parsed.bin_dir, parsed.exit) == ("/tmp/d", "dist/cdp", True)


@pytest.mark.parametrize("setting", ["DATABASE_URL", "NATS_URL", "MAILCHIMP_API_KEY",
                                     "MAILCHIMP_API_URL", "CDP_PROFILE_ADDR"])
def test_demo_refuses_settings_that_point_at_real_infrastructure(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(setting, "somewhere-real")
    data_dir = tmp_path / "demo"
    assert main(["demo", "--exit", "--data-dir", str(data_dir)]) == 2
    error = capsys.readouterr().err
    assert setting in error and "never on real infrastructure" in error
    assert "somewhere-real" not in error
    assert not data_dir.exists()


def test_every_outside_setting_is_named_and_empty_ones_are_not() -> None:
    environ = {"NATS_URL": "nats://x", "MAILCHIMP_API_KEY": "k-us1", "DATABASE_URL": "",
               "CDP_CONNECTOR_MAILCHIMP_ADDR": "x:1", "CDP_IDENTITY_PORT": "6000"}
    assert outside_settings(environ) == ["NATS_URL", "MAILCHIMP_API_KEY",
                                         "CDP_CONNECTOR_MAILCHIMP_ADDR"]


def test_demo_refuses_a_folder_it_did_not_make_and_leaves_it_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state.json").write_text("{}")
    assert main(["demo", "--exit", "--data-dir", str(tmp_path)]) == 2
    assert "no demo made" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_previous_demo_folder_is_emptied_and_a_new_one_is_marked(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    assert prepare_data_dir(fresh) is False
    assert (fresh / MARKER_FILE).is_file()
    (fresh / "postgres").mkdir()
    (fresh / "postgres" / "PG_VERSION").write_text("16")
    (fresh / "state.json").write_text("{}")
    lock_data_dir(fresh).close()
    assert prepare_data_dir(fresh) is True
    assert sorted(p.name for p in fresh.iterdir()) == sorted([LOCK_FILE, MARKER_FILE])


def test_a_demo_folder_in_use_is_not_emptied(tmp_path: Path) -> None:
    prepare_data_dir(tmp_path)
    (tmp_path / "state.json").write_text("{}")
    held = lock_data_dir(tmp_path)
    try:
        with pytest.raises(DemoRefused, match="already running"):
            prepare_data_dir(tmp_path)
    finally:
        held.close()
    assert (tmp_path / "state.json").exists()


def test_the_write_key_of_source_web_is_used() -> None:
    assert write_key_for_web("cdp-local-write-key=web") == "cdp-local-write-key"
    assert write_key_for_web("k1=ios, k2=web") == "k2"
    assert write_key_for_web("k1=ios") == "k1"
    with pytest.raises(DemoRefused):
        write_key_for_web("nonsense")


def test_both_example_segments_are_packaged_with_the_cli() -> None:
    names = [example_segment(name).name for name in EXAMPLE_SEGMENTS]
    assert names == ["High-value email-engaged customers", "Subscribers with abandoned carts"]


def test_the_sample_invents_its_people_with_reserved_addresses_and_numbers() -> None:
    sample = load_sample()
    records: list[CrmContact | ShopCustomer] = [*sample.crm, *sample.shop]
    assert 50 <= len(records) <= 200
    for record in records:
        assert re.fullmatch(r"[^@\s]+@example\.(com|org)", record.email, re.I), record.id
        if record.phone:
            assert digits(record.phone)[3:6] == "555", record.id
            assert digits(record.phone)[6:8] == "01", record.id
    for opened in sample.email_opens:
        assert opened.email.endswith(("@example.com", "@example.org"))


def test_the_sample_overlaps_in_every_way_identity_must_join() -> None:
    sample = load_sample()
    crm_emails = {c.email: c for c in sample.crm}
    crm_phones = {digits(c.phone): c for c in sample.crm}
    crm_lower = {c.email.lower() for c in sample.crm}
    kinds: Counter[str] = Counter()
    for shop in sample.shop:
        if shop.email.lower() in crm_lower:
            kinds["same email"] += 1
            kinds["other capitals"] += shop.email not in crm_emails
        elif shop.phone and digits(shop.phone) in crm_phones:
            crm = crm_phones[digits(shop.phone)]
            kinds["same phone only"] += 1
            kinds["phone written otherwise"] += shop.phone != crm.phone
        elif any(c.birth_date == shop.birth_date and c.postcode == shop.postcode
                 for c in sample.crm):
            kinds["attributes only"] += 1
        else:
            kinds["shop only"] += 1
    assert kinds["other capitals"] > 0
    assert kinds["phone written otherwise"] == kinds["same phone only"] > 0
    assert kinds["attributes only"] >= 1
    assert kinds["shop only"] > 0


def test_sample_events_name_customers_the_sample_knows() -> None:
    sample = load_sample()
    shop_ids = {s.id for s in sample.shop}
    records: list[CrmContact | ShopCustomer] = [*sample.crm, *sample.shop]
    members = {member_email(r) for r in records}
    assert {o.shop_id for o in sample.orders} <= shop_ids
    assert {c.shop_id for c in sample.carts} <= shop_ids
    assert {o.email for o in sample.email_opens} <= members
    assert set(sample.unsubscribes) <= members
    identified = {i.shop_id for i in sample.identifies}
    assert {v.shop_id for v in sample.views} <= identified
    assert sample.profile_example in {c.id for c in sample.crm}


def test_records_become_fragments_and_resolutions_without_phones_in_attributes() -> None:
    sample = load_sample()
    request = fragments_request(sample, NOW)
    assert len(request.fragments) == len(sample.crm) + len(sample.shop)
    for fragment in request.fragments:
        assert not fragment.customer_id and fragment.identifiers.email
        assert fragment.source in ("crm", "shopify")
        attributes = json_format.MessageToDict(fragment.attributes)
        assert "phone" not in str(attributes).lower()
        assert fragment.observed_at.ToDatetime(tzinfo=UTC) < NOW
    resolved = resolve_request(sample.shop[0])
    assert resolved.allow_probabilistic and resolved.attributes.postcode
    assert resolved.identifiers.platform_ids[0].platform == "shopify"


def test_events_have_unique_ids_and_identifies_go_before_the_views_they_explain() -> None:
    sample = load_sample()
    events = grpc_events(sample, NOW)
    identifies, views = tracking_batches(sample, NOW)
    ids = [e.id for e in events] + [m["messageId"] for m in identifies["batch"] + views["batch"]]
    assert len(ids) == len(set(ids))
    assert {e.type for e in events} == {"order.completed", "cart.updated", "cart.abandoned",
                                        "email.opened"}
    assert all(e.timestamp.ToDatetime(tzinfo=UTC) < NOW for e in events)
    assert {m["type"] for m in identifies["batch"]} == {"identify"}
    assert {m["type"] for m in views["batch"]} == {"track", "page"}
    tied = {m["userId"] for m in identifies["batch"]}
    assert {m["userId"] for m in views["batch"]} <= tied


def test_hidden_fields_keep_their_row_and_provenance_but_not_their_value() -> None:
    profile = json_format.ParseDict({
        "customerId": "c-1", "version": 2, "updatedAt": "2026-12-04T10:00:00Z",
        "attributes": {"user": {"firstName": "Ada", "email": "ada@example.com"}},
        "provenance": {
            "user.firstName": {"source": "crm", "observedAt": "2026-12-04T10:00:00Z",
                               "strategy": "source_priority", "reason": "crm ranks 1 of 5"},
            "user.email": {"source": "crm", "observedAt": "2026-12-04T10:00:00Z",
                           "strategy": "source_priority", "reason": "crm ranks 1 of 6"},
        },
    }, profile_pb2.UnifiedProfile())
    shown = format_profile(profile, hidden=["user.firstName"])
    assert "Ada" not in shown
    assert re.search(r"user\.firstName\s+\(hidden\)\s+crm .* crm ranks 1 of 5", shown)
    assert '"ada@example.com"' in shown
