from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from cdp.common.v1 import common_pb2
from cdp.profile.v1 import profile_pb2
from cdp_cli.main import build_parser, main
from cdp_cli.profile_commands import format_profile, format_sync, parse_attributes, parse_time
from cdp_cli.services import by_name


def test_help_lists_the_profile_and_mappings_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "profile" in out and "mappings" in out
    assert by_name("profile").port == 50052


def test_mappings_check_accepts_a_valid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "mappings:\n  - source: crm\n    target: mailchimp\n    fields:\n"
        "      - {from: user.firstName, to: merge_fields.FNAME}\n"
        "      - {from: user.tags, to: tags, transform: mailchimp_tags}\n"
    )
    assert main(["mappings", "check", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok: 1 mapping(s): crm -> mailchimp (2 fields)\n"


def test_mappings_check_reports_every_problem_with_file_line_and_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mappings:\n  - source: ecommerce\n    target: mailchimp\n    fields:\n"
        "      - {from: customer.totalSpent, to: merge_fields.TOTAL_SPENT, transform: number}\n"
        "      - {from: customer..orderCount, to: merge_fields.ORDCOUNT}\n"
        "      - {from: customer.lastOrderDate, to: merge_fields.LASTORD, transform: isodate}\n"
    )
    assert main(["mappings", "check", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{bad}:5: mapping ecommerce -> mailchimp, entry 1 ")
    assert "merge tag 'TOTAL_SPENT' has 11 characters" in err[0]
    assert err[1].startswith(f"{bad}:6: mapping ecommerce -> mailchimp, entry 2 ")
    assert "has an empty segment" in err[1]
    assert err[2].startswith(f"{bad}:7: mapping ecommerce -> mailchimp, entry 3 ")
    assert "unknown transform 'isodate'" in err[2]
    assert err[3] == f"{bad}: 3 problems"


def test_mappings_check_knows_the_platforms_it_is_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "m.yaml"
    file.write_text("mappings:\n  - source: erp\n    target: crm\n    fields: [{from: a, to: b}]\n")
    assert main(["mappings", "check", str(file)]) == 1
    assert "unknown platform 'erp'" in capsys.readouterr().err
    assert main(["mappings", "check", str(file), "--platforms", "erp,crm"]) == 0


def test_ingest_refuses_attributes_that_are_not_a_json_object(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["profile", "ingest", "--source", "crm", "--attributes", "[1]"]) == 2
    assert "--attributes must be a JSON object" in capsys.readouterr().err
    assert main(["profile", "ingest", "--source", "crm", "--attributes", "{x"]) == 2
    assert "--attributes is not JSON" in capsys.readouterr().err
    assert (
        main(
            [
                "profile",
                "ingest",
                "--source",
                "crm",
                "--attributes",
                "{}",
                "--observed-at",
                "yesterday",
            ]
        )
        == 2
    )
    assert "--observed-at 'yesterday' is not an ISO 8601 time" in capsys.readouterr().err


def test_attributes_can_come_from_a_file_and_times_default_to_utc(tmp_path: Path) -> None:
    file = tmp_path / "a.json"
    file.write_text(json.dumps({"user": {"firstName": "Ada"}}))
    parsed = json_format.MessageToDict(parse_attributes(f"@{file}"))
    assert parsed == {"user": {"firstName": "Ada"}}
    assert parse_time("2026-12-04T10:00:00").ToJsonString() == "2026-12-04T10:00:00Z"


def test_show_prints_each_field_with_its_source_and_reason() -> None:
    profile = profile_pb2.UnifiedProfile(customer_id="c-1", version=2)
    profile.attributes.update({"user": {"firstName": "Ada", "tags": ["vip", "buyer"]}})
    profile.provenance["user.firstName"].CopyFrom(
        profile_pb2.FieldProvenance(
            source="crm", strategy="source_priority", reason="crm ranks 1 of 2 (crm > ecommerce)"
        )
    )
    profile.provenance["user.tags"].CopyFrom(
        profile_pb2.FieldProvenance(
            source="ecommerce",
            strategy="merge_arrays",
            contributing_sources=["crm", "ecommerce"],
            reason="union of the latest lists from crm, ecommerce, duplicates removed",
        )
    )
    lines = format_profile(profile).splitlines()
    assert lines[0].startswith("customer c-1  version 2")
    assert lines[1].split() == ["field", "value", "source", "observed", "at", "strategy", "why"]
    assert lines[2].split()[:3] == ["user.firstName", '"Ada"', "crm"]
    assert lines[2].endswith("crm ranks 1 of 2 (crm > ecommerce)")
    assert lines[3].split()[:3] == ["user.tags", '["vip",', '"buyer"]']
    assert "crm+ecommerce" in lines[3]


def test_sync_prints_one_line_per_platform() -> None:
    response = profile_pb2.SyncProfileResponse(
        results=[
            common_pb2.PlatformSyncResult(platform="mailchimp", success=True, records_synced=1),
            common_pb2.PlatformSyncResult(platform="support", error="no answer within 10 s"),
        ]
    )
    first, second = format_sync(response).splitlines()
    assert first.startswith("mailchimp") and " ok " in first and "1 record(s)" in first
    assert second.split(None, 2) == ["support", "FAILED", "no answer within 10 s"]
