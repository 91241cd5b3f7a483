"""`cdp segments ...`: create, list, show, preview and sync segments."""

from __future__ import annotations

import argparse
import json
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from cdp.segmentation.v1 import segmentation_pb2, segmentation_pb2_grpc
from cdp_cli.services import address_of, by_name

pb = segmentation_pb2


def add_parser(commands: Any) -> None:
    segments = commands.add_parser(
        "segments", help="define segments, see their members, preview criteria, sync them"
    )
    actions = segments.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="create a segment from a JSON file (cdp.segmentation.v1.Segment as JSON)",
        description="Example: cdp segments create --file "
        "services/segmentation/examples/high_value_email_engaged.json",
    )
    create.add_argument("--file", required=True, help="the segment as JSON")
    create.add_argument("--json", action="store_true", help="print the response as JSON")
    create.set_defaults(func=run)

    listing = actions.add_parser("list", help="every segment: members, schedule, platforms")
    listing.add_argument("--json", action="store_true", help="print the response as JSON")
    listing.set_defaults(func=run)

    show = actions.add_parser(
        "show", help="a segment's definition, member count and where each platform's sync stands"
    )
    show.add_argument("segment_id")
    show.add_argument("--members", type=int, default=0, metavar="N",
                      help="also list up to N members")
    show.add_argument("--json", action="store_true", help="print the response as JSON")
    show.set_defaults(func=run)

    preview = actions.add_parser(
        "preview",
        help="count and sample who criteria select now, without storing anything",
        description="--criteria takes a Criteria as JSON, or @FILE; --file takes a whole "
        "segment file and previews its criteria.",
    )
    source = preview.add_mutually_exclusive_group(required=True)
    source.add_argument("--criteria", help="the criteria as JSON, or @FILE")
    source.add_argument("--file", help="a segment file (its criteria are previewed)")
    preview.add_argument("--sample", type=int, default=10, help="sample size (default 10)")
    preview.set_defaults(func=run)

    sync = actions.add_parser(
        "sync",
        help="send a segment's membership delta to its platforms now; one line per platform",
        description="Exits 1 when any platform failed.",
    )
    sync.add_argument("segment_id")
    sync.add_argument("--full", action="store_true",
                      help="make each platform mirror the membership exactly")
    sync.set_defaults(func=run)


def _read_json(value: str, what: str) -> Any:
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} is not JSON: {error}") from None


def read_segment(path: str) -> segmentation_pb2.Segment:
    document = _read_json(f"@{path}", f"--file {path}")
    try:
        return json_format.ParseDict(document, pb.Segment())
    except json_format.ParseError as error:
        raise ValueError(f"--file {path}: not a segment: {error}") from None


def read_criteria(value: str) -> segmentation_pb2.Criteria:
    try:
        return json_format.ParseDict(_read_json(value, "--criteria"), pb.Criteria())
    except json_format.ParseError as error:
        raise ValueError(f"--criteria: not criteria: {error}") from None


_SCHEDULES = {
    pb.SCHEDULE_KIND_REALTIME: "realtime",
    pb.SCHEDULE_KIND_HOURLY: "hourly",
    pb.SCHEDULE_KIND_DAILY: "daily",
    pb.SCHEDULE_KIND_CRON: "cron",
}
_LOGIC = {pb.LOGICAL_OPERATOR_AND: "and", pb.LOGICAL_OPERATOR_OR: "or",
          pb.LOGICAL_OPERATOR_NOT: "not"}


def schedule_text(schedule: segmentation_pb2.SyncSchedule) -> str:
    kind = _SCHEDULES.get(schedule.kind, "?")
    return f"cron {schedule.cron}" if kind == "cron" else kind


def _whole(value: Any) -> Any:
    """Protobuf carries every number as a double: 500.0 reads as 500."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value


def criteria_text(criteria: segmentation_pb2.Criteria) -> str:
    """`(customer.lifetime_value greaterThan 500 [crm] and ...)`."""
    parts = []
    for criterion in criteria.conditions:
        if criterion.WhichOneof("node") == "group":
            parts.append(criteria_text(criterion.group))
            continue
        condition = criterion.condition
        words = [condition.field, condition.operator]
        if condition.HasField("value"):
            words.append(json.dumps(_whole(json_format.MessageToDict(condition.value))))
        if condition.unit:
            words.append(condition.unit)
        if condition.source:
            words.append(f"[{condition.source}]")
        parts.append(" ".join(words))
    logic = _LOGIC.get(criteria.operator, "?")
    if logic == "not":
        return f"not {parts[0]}" if parts else "not ()"
    return "(" + f" {logic} ".join(parts) + ")"


def _when(stamp: Any) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")


def format_segment(segment: segmentation_pb2.Segment) -> str:
    lines = [
        f"{segment.name}  ({segment.id})",
        f"  members   {segment.member_count}",
        f"  criteria  {criteria_text(segment.criteria)}",
        f"  schedule  {schedule_text(segment.schedule)}",
        f"  platforms {', '.join(segment.sync_platforms) or '-'}",
    ]
    if segment.description:
        lines.insert(1, f"  {segment.description}")
    for status in segment.sync_status:
        last = _when(status.last_success_at) if status.HasField("last_success_at") else "never"
        following = _when(status.next_sync_at) if status.HasField("next_sync_at") else "on change"
        line = (
            f"  sync {status.platform}: last success {last}, next {following}, "
            f"on platform {status.members_on_platform}, pending +{status.pending_additions} "
            f"-{status.pending_removals}"
        )
        if status.last_error:
            line += f", failing ({status.consecutive_failures}x): {status.last_error}"
        lines.append(line)
    return "\n".join(lines)


def format_list(segments: list[segmentation_pb2.Segment]) -> str:
    if not segments:
        return "no segments"
    rows = [("id", "name", "members", "schedule", "platforms")]
    for segment in segments:
        rows.append((segment.id, segment.name, str(segment.member_count),
                     schedule_text(segment.schedule), ",".join(segment.sync_platforms)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  " + row[4]
        for row in rows
    )


def format_sync(response: segmentation_pb2.SyncSegmentResponse) -> str:
    lines = []
    for result in response.results:
        if result.success:
            lines.append(f"{result.platform:<16} ok      {result.records_synced} change(s) sent, "
                         f"{result.records_failed} refused  {_when(result.synced_at)}")
        else:
            kind = "FAILED (permanent)" if result.permanent else "FAILED"
            lines.append(f"{result.platform:<16} {kind}  {result.error}")
    return "\n".join(lines) or "the segment syncs to no platform"


def run(args: argparse.Namespace) -> int:
    # Arguments are read before any channel opens: a bad file fails fast.
    segment = read_segment(args.file) if args.action == "create" else None
    criteria = None
    if args.action == "preview":
        criteria = read_criteria(args.criteria) if args.criteria else read_segment(
            args.file).criteria
    with grpc.insecure_channel(address_of(by_name("segmentation"))) as channel:
        stub = segmentation_pb2_grpc.SegmentationServiceStub(channel)
        if args.action == "create":
            created = stub.CreateSegment(pb.CreateSegmentRequest(segment=segment), timeout=120)
            print(json_format.MessageToJson(created, indent=2) if args.json
                  else format_segment(created.segment))
        elif args.action == "list":
            listed = stub.ListSegments(pb.ListSegmentsRequest(), timeout=30)
            print(json_format.MessageToJson(listed, indent=2) if args.json
                  else format_list(list(listed.segments)))
        elif args.action == "show":
            got = stub.GetSegment(pb.GetSegmentRequest(segment_id=args.segment_id), timeout=30)
            print(json_format.MessageToJson(got, indent=2) if args.json
                  else format_segment(got.segment))
            if args.members > 0:
                for page in stub.ListMembers(
                    pb.ListMembersRequest(segment_id=args.segment_id, limit=args.members),
                    timeout=120,
                ):
                    for member in page.members:
                        print(f"  {member.customer_id}  entered {_when(member.entered_at)}")
        elif args.action == "preview":
            previewed = stub.PreviewSegment(
                pb.PreviewSegmentRequest(criteria=criteria, sample_size=args.sample), timeout=120
            )
            print(f"{previewed.count} member(s) now")
            for customer in previewed.sample_customer_ids:
                print(f"  {customer}")
        elif args.action == "sync":
            synced = stub.SyncSegment(
                pb.SyncSegmentRequest(segment_id=args.segment_id, full_resync=args.full),
                timeout=600,
            )
            print(format_sync(synced))
            return 0 if all(result.success for result in synced.results) else 1
    return 0
