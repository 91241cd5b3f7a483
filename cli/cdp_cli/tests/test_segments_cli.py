from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from cdp.common.v1 import common_pb2
from cdp.segmentation.v1 import segmentation_pb2 as pb
from cdp_cli.main import build_parser, main
from cdp_cli.segments_commands import (
    criteria_text,
    format_list,
    format_segment,
    format_sync,
    read_segment,
)
from cdp_cli.services import by_name

SEGMENT = {
    "name": "High-value email-engaged customers",
    "criteria": {
        "operator": "LOGICAL_OPERATOR_AND",
        "conditions": [
            {"condition": {"field": "customer.lifetime_value", "operator": "greaterThan",
                           "value": 500, "source": "crm"}},
            {"group": {"operator": "LOGICAL_OPERATOR_NOT", "conditions": [
                {"condition": {"field": "email.last_open_date", "operator": "withinLast",
                               "value": 30, "unit": "days"}}]}},
        ],
    },
    "syncPlatforms": ["mailchimp"],
    "schedule": {"kind": "SCHEDULE_KIND_CRON", "cron": "30 6 * * 1"},
}


def test_segments_is_a_command_and_segmentation_a_service_on_50054(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["segments", "--help"])
    out = capsys.readouterr().out
    assert all(action in out for action in ("create", "list", "show", "preview", "sync"))
    assert by_name("segmentation").port == 50054


def test_a_segment_file_reads_and_shows_its_criteria_as_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "segment.json"
    path.write_text(json.dumps(SEGMENT))
    segment = read_segment(str(path))
    assert criteria_text(segment.criteria) == (
        "(customer.lifetime_value greaterThan 500 [crm] and "
        "not email.last_open_date withinLast 30 days)"
    )
    segment.id = "7d4e"
    segment.member_count = 12
    segment.sync_status.add(platform="mailchimp", pending_additions=3, last_error="boom",
                            consecutive_failures=2)
    shown = format_segment(segment)
    assert "members   12" in shown and "schedule  cron 30 6 * * 1" in shown
    assert "sync mailchimp: last success never" in shown
    assert "pending +3 -0, failing (2x): boom" in shown
    assert format_list([segment]).splitlines()[1].startswith("7d4e  High-value")
    assert format_list([]) == "no segments"


def test_sync_prints_one_line_per_platform() -> None:
    reply = pb.SyncSegmentResponse(results=[
        common_pb2.PlatformSyncResult(platform="mailchimp", success=True, records_synced=3),
        common_pb2.PlatformSyncResult(platform="crm", success=False, error="down"),
    ])
    lines = format_sync(reply).splitlines()
    assert lines[0].startswith("mailchimp") and "3 change(s) sent" in lines[0]
    assert lines[1] == "crm              FAILED  down"


def test_a_bad_file_fails_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert main(["segments", "create", "--file", str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"name": "x", "schedule": {"kind": "WEEKLY"}}))
    assert main(["segments", "preview", "--file", str(wrong)]) == 2
    assert "not a segment" in capsys.readouterr().err
    assert json_format.ParseDict(SEGMENT, pb.Segment()).name == SEGMENT["name"]
