"""`cdp profile ...`: ingest fragments, show a unified profile with provenance, sync it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_cli.services import address_of, by_name

VALUE_WIDTH = 36


def add_parser(commands: Any) -> None:
    profile = commands.add_parser(
        "profile", help="ingest fragments, show unified profiles with provenance, sync them"
    )
    actions = profile.add_subparsers(dest="action", required=True, metavar="ACTION")

    show = actions.add_parser(
        "show", help="print a customer's unified profile: every field, where it came from, why"
    )
    show.add_argument("customer_id")
    show.add_argument("--json", action="store_true", help="print the response as JSON")
    show.set_defaults(func=run)

    ingest = actions.add_parser(
        "ingest",
        help="send one fragment (or a batch file) of what a platform observed",
        description="Example: cdp profile ingest --source crm --email ada@example.com "
        '--attributes \'{"user": {"firstName": "Ada"}}\'',
    )
    ingest.add_argument("--source", help="the platform the attributes come from, e.g. crm")
    ingest.add_argument("--customer-id", default="", help="the suite's customer id, if known")
    ingest.add_argument("--email", default="")
    ingest.add_argument("--phone", default="")
    ingest.add_argument("--user-id", default="", help="your systems' authoritative customer id")
    ingest.add_argument(
        "--attributes", help="the attributes as a JSON object, or @FILE to read them from a file"
    )
    ingest.add_argument(
        "--observed-at",
        help="when the source observed them, ISO 8601 (default: now; UTC when no offset)",
    )
    ingest.add_argument(
        "--batch",
        metavar="FILE",
        help="a JSON list of fragments (ProfileFragment as JSON) sent in one call instead",
    )
    ingest.set_defaults(func=run)

    sync = actions.add_parser(
        "sync",
        help="send the unified profile to every target platform at once; one line per platform",
        description="Exits 1 when any target failed.",
    )
    sync.add_argument("customer_id")
    sync.add_argument("--source", required=True, help="the platform that changed (never a target)")
    sync.add_argument("--target", action="append", default=[], help="only this target (repeatable)")
    sync.set_defaults(func=run)


def parse_time(value: str | None) -> Timestamp:
    moment = datetime.now(UTC)
    if value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--observed-at {value!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def parse_attributes(value: str | None) -> Struct:
    if not value:
        raise ValueError("--attributes is required (a JSON object, or @FILE)")
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--attributes is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError("--attributes must be a JSON object")
    struct = Struct()
    struct.update(document)
    return struct


def build_fragment(args: argparse.Namespace) -> profile_pb2.ProfileFragment:
    if not args.source:
        raise ValueError("--source is required")
    return profile_pb2.ProfileFragment(
        source=args.source,
        customer_id=args.customer_id,
        identifiers=common_pb2.Identifiers(
            email=args.email, phone=args.phone, user_id=args.user_id
        ),
        attributes=parse_attributes(args.attributes),
        observed_at=parse_time(args.observed_at),
    )


def read_batch(path: str) -> profile_pb2.IngestProfileFragmentsRequest:
    try:
        items = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"--batch {path}: not JSON: {error}") from None
    if not isinstance(items, list):
        raise ValueError(f"--batch {path}: must be a JSON list of fragments")
    request = profile_pb2.IngestProfileFragmentsRequest()
    for index, item in enumerate(items):
        try:
            json_format.ParseDict(item, request.fragments.add())
        except json_format.ParseError as error:
            raise ValueError(f"--batch {path}: fragment {index}: {error}") from None
    return request


def _shown(value: Any) -> str:
    # Struct carries every number as a double: a count of 3 is shown as 3, not 3.0.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _leaf(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def format_profile(
    profile: profile_pb2.UnifiedProfile, *, hidden: Collection[str] = ()
) -> str:
    """The profile as a table: every field, its value, where it came from and why it won.
    Fields in `hidden` keep their row with the value replaced."""
    attributes = json_format.MessageToDict(profile.attributes)
    updated = profile.updated_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
    lines = [f"customer {profile.customer_id}  version {profile.version}  updated {updated}"]
    rows = [("field", "value", "source", "observed at", "strategy", "why")]
    for path in sorted(profile.provenance):
        field = profile.provenance[path]
        source = field.source
        if field.contributing_sources:
            source = "+".join(field.contributing_sources)
        rows.append(
            (
                path,
                "(hidden)" if path in hidden else _shown(_leaf(attributes, path)),
                source,
                field.observed_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds"),
                field.strategy,
                field.reason,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True))
            + "  "
            + row[5]
        )
    return "\n".join(lines)


def format_sync(response: profile_pb2.SyncProfileResponse) -> str:
    lines = []
    for result in response.results:
        when = result.synced_at.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds")
        if result.success:
            lines.append(f"{result.platform:<16} ok      {result.records_synced} record(s)  {when}")
        else:
            kind = "FAILED (permanent)" if result.permanent else "FAILED"
            lines.append(f"{result.platform:<16} {kind}  {result.error}")
    return "\n".join(lines) or "no target platform has a mapping from this source"


def run(args: argparse.Namespace) -> int:
    if args.action == "ingest":
        # Validate the arguments before opening any channel.
        batch = read_batch(args.batch) if args.batch else None
        single = None if batch is not None else build_fragment(args)
    with grpc.insecure_channel(address_of(by_name("profile"))) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        if args.action == "show":
            response = stub.GetUnifiedProfile(
                profile_pb2.GetUnifiedProfileRequest(customer_id=args.customer_id), timeout=30
            )
            if args.json:
                print(json_format.MessageToJson(response, indent=2))
            else:
                print(format_profile(response.profile))
        elif args.action == "ingest":
            if batch is not None:
                reply: Any = stub.IngestProfileFragments(batch, timeout=60)
            else:
                reply = stub.IngestProfileFragment(
                    profile_pb2.IngestProfileFragmentRequest(fragment=single), timeout=30
                )
            print(json_format.MessageToJson(reply, indent=2))
        elif args.action == "sync":
            synced = stub.SyncProfile(
                profile_pb2.SyncProfileRequest(
                    customer_id=args.customer_id, source=args.source, targets=args.target
                ),
                timeout=60,
            )
            print(format_sync(synced))
            return 0 if all(result.success for result in synced.results) else 1
    return 0
