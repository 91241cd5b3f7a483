"""`cdp events ...`: publish an event, follow the broadcast, replay stored events."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.api import DeliverPolicy

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp_bus import NatsSettings, connect_nats
from cdp_cli.services import address_of, by_name


def add_parser(commands: Any) -> None:
    events = commands.add_parser("events", help="publish, follow and replay unified events")
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")

    publish = actions.add_parser("publish", help="publish one event through the router")
    publish.add_argument("--type", required=True, help="object.action, e.g. order.completed")
    publish.add_argument("--source", required=True, help="the platform it comes from")
    publish.add_argument("--id", default="", help="event id (a new one when omitted)")
    publish.add_argument("--customer-id", default="")
    publish.add_argument("--email", default="")
    publish.add_argument("--user-id", default="")
    publish.add_argument("--anonymous-id", default="")
    publish.add_argument("--timestamp", default="", help="ISO 8601; now when omitted")
    publish.add_argument("--properties", default="{}", help="a JSON object")
    publish.set_defaults(func=run)

    tail = actions.add_parser("tail", help="print events as they are broadcast (Ctrl-C stops)")
    tail.add_argument("--subject", default="cdp.events.>",
                      help="NATS subject, e.g. cdp.events.email.> or cdp.routed.crm.>")
    tail.add_argument("--nats-url", default="", help="NATS_URL, or the one `cdp up` runs")
    tail.add_argument("--data-dir", default="", help="the data folder `cdp up` uses")
    tail.set_defaults(func=run)

    replay = actions.add_parser("replay", help="re-publish stored events to one target")
    replay.add_argument("--target", required=True, help="a role, e.g. crm or email")
    replay.add_argument("--type", action="append", default=[], dest="types")
    replay.add_argument("--customer-id", default="")
    replay.add_argument("--source", default="")
    replay.add_argument("--since", default="", help="ISO 8601, inclusive")
    replay.add_argument("--until", default="", help="ISO 8601, exclusive")
    replay.set_defaults(func=run)


def _timestamp(raw: str, option: str) -> Timestamp:
    stamp = Timestamp()
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else datetime.now(UTC)
    except ValueError:
        raise ValueError(f"{option} {raw!r} is not an ISO 8601 time") from None
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return stamp


def _publish(args: argparse.Namespace, stub: Any) -> Any:
    try:
        properties = json.loads(args.properties)
    except ValueError:
        raise ValueError("--properties must be a JSON object") from None
    if not isinstance(properties, dict):
        raise ValueError("--properties must be a JSON object")
    event = events_pb2.Event(
        id=args.id or str(uuid.uuid4()), type=args.type, source=args.source,
        timestamp=_timestamp(args.timestamp, "--timestamp"), customer_id=args.customer_id,
        identifiers=common_pb2.Identifiers(email=args.email, user_id=args.user_id,
                                           anonymous_id=args.anonymous_id),
    )
    event.properties.update(properties)
    return stub.PublishEvent(events_pb2.PublishEventRequest(event=event), timeout=30)


def _replay(args: argparse.Namespace, stub: Any) -> Any:
    event_filter = events_pb2.EventFilter(customer_id=args.customer_id, types=args.types,
                                          source=args.source)
    if args.since:
        event_filter.since.CopyFrom(_timestamp(args.since, "--since"))
    if args.until:
        event_filter.until.CopyFrom(_timestamp(args.until, "--until"))
    return stub.ReplayEvents(events_pb2.ReplayEventsRequest(filter=event_filter,
                                                            target=args.target), timeout=600)


def _nats_url(args: argparse.Namespace) -> str:
    if args.nats_url:
        return str(args.nats_url)
    if os.environ.get("NATS_URL"):
        return os.environ["NATS_URL"]
    state = Path(args.data_dir or os.environ.get("CDP_DATA_DIR") or ".cdp") / "state.json"
    if state.exists():
        return str(json.loads(state.read_text())["nats"])
    raise ValueError("no NATS to follow: give --nats-url, set NATS_URL or run `cdp up` here")


async def _tail(url: str, subject: str) -> None:
    client = await connect_nats(NatsSettings(url=url), name="cdp-events-tail")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def show(message: Any) -> None:
        headers = message.headers or {}
        event = events_pb2.Event.FromString(message.data) if headers.get(
            "ce-dataschema") == "cdp.events.v1.Event" else None
        body = json_format.MessageToDict(event) if event is not None else {
            "bytes": len(message.data)}
        print(json.dumps({"subject": message.subject, "id": headers.get("ce-id"),
                          "type": headers.get("ce-type"), "event": body}), flush=True)

    subscription = await client.jetstream().subscribe(subject, cb=show, ordered_consumer=True,
                                                      deliver_policy=DeliverPolicy.NEW)
    try:
        await stop.wait()
    finally:
        await subscription.unsubscribe()
        await client.close()


def run(args: argparse.Namespace) -> int:
    if args.action == "tail":
        asyncio.run(_tail(_nats_url(args), args.subject))
        return 0
    with grpc.insecure_channel(address_of(by_name("event_router"))) as channel:
        stub = events_pb2_grpc.EventRouterServiceStub(channel)
        response = _publish(args, stub) if args.action == "publish" else _replay(args, stub)
        print(json_format.MessageToJson(response, indent=2))
    return 0
