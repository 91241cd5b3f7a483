"""The unified event between its protobuf form and the router's own."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2
from cdp_event_router.domain.model import EventIdentifiers, IncomingEvent
from cdp_grpc.structs import struct_to_dict


def _identifiers(message: common_pb2.Identifiers) -> EventIdentifiers:
    return EventIdentifiers(
        user_id=message.user_id.strip(),
        email=message.email.strip(),
        phone=message.phone.strip(),
        anonymous_id=message.anonymous_id.strip(),
        session_id=message.session_id.strip(),
        device_id=message.device_id.strip(),
        platform_ids=tuple((p.platform, p.id) for p in message.platform_ids),
        cookies=tuple(message.cookies),
    )


def from_proto(message: events_pb2.Event) -> IncomingEvent:
    context: dict[str, Any] = {}
    if message.HasField("context"):
        context = MessageToDict(message.context, preserving_proto_field_name=True)
    return IncomingEvent(
        id=message.id.strip(),
        type=message.type.strip(),
        source=message.source.strip().lower(),
        timestamp=(message.timestamp.ToDatetime(tzinfo=UTC)
                   if message.HasField("timestamp") else None),
        customer_id=message.customer_id.strip(),
        identifiers=_identifiers(message.identifiers),
        properties=struct_to_dict(message.properties),
        context=context,
        wire=message,
        size=message.ByteSize(),
    )


def to_proto(event: IncomingEvent) -> events_pb2.Event:
    message = events_pb2.Event(id=event.id, type=event.type, source=event.source,
                               customer_id=event.customer_id)
    if event.timestamp is not None:
        message.timestamp.FromDatetime(event.timestamp)
    ids = event.identifiers
    message.identifiers.CopyFrom(common_pb2.Identifiers(
        user_id=ids.user_id, email=ids.email, phone=ids.phone, anonymous_id=ids.anonymous_id,
        session_id=ids.session_id, device_id=ids.device_id, cookies=list(ids.cookies),
        platform_ids=[common_pb2.PlatformId(platform=p, id=i) for p, i in ids.platform_ids],
    ))
    if event.properties:
        message.properties.update(event.properties)
    if event.context:
        context = message.context
        for key in ("ip", "user_agent", "locale", "page_url"):
            if event.context.get(key):
                setattr(context, key, str(event.context[key]))
        campaign = event.context.get("campaign") or {}
        for key in ("name", "source", "medium", "term", "content"):
            if campaign.get(key):
                setattr(context.campaign, key, str(campaign[key]))
        location = event.context.get("location") or {}
        for key in ("country", "region", "city"):
            if location.get(key):
                setattr(context.location, key, str(location[key]))
        for key in ("latitude", "longitude"):
            if isinstance(location.get(key), (int, float)):
                setattr(context.location, key, float(location[key]))
    return message


def encode(event: IncomingEvent, customer_id: str, received_at: datetime) -> bytes:
    """The event as stored and broadcast: resolved customer and reception time filled in."""
    message = event.wire if isinstance(event.wire, events_pb2.Event) else to_proto(event)
    message.customer_id = customer_id
    message.received_at.FromDatetime(received_at)
    data: bytes = message.SerializeToString()
    return data


def raw_json(event: IncomingEvent) -> str:
    """The event as received, for the failed-events table."""
    if isinstance(event.wire, events_pb2.Event):
        return json.dumps(MessageToDict(event.wire, preserving_proto_field_name=True))
    return json.dumps({"id": event.id, "type": event.type, "source": event.source,
                       "properties": event.properties}, default=str)


def decode(payload: bytes) -> events_pb2.Event:
    return events_pb2.Event.FromString(payload)
