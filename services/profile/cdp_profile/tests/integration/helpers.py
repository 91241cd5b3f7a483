"""Building requests and reading the bus in integration tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext

from cdp.common.v1 import common_pb2
from cdp.profile.v1 import profile_pb2
from cdp_bus import CloudEvent

NOW = datetime.now(UTC)


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def fragment(
    source: str,
    attributes: dict[str, Any],
    *,
    email: str = "",
    customer_id: str = "",
    hours_ago: float = 1.0,
) -> profile_pb2.ProfileFragment:
    document = Struct()
    document.update(attributes)
    return profile_pb2.ProfileFragment(
        source=source,
        customer_id=customer_id,
        identifiers=common_pb2.Identifiers(email=email),
        attributes=document,
        observed_at=stamp(NOW - timedelta(hours=hours_ago)),
    )


def ingest(message: profile_pb2.ProfileFragment) -> profile_pb2.IngestProfileFragmentRequest:
    return profile_pb2.IngestProfileFragmentRequest(fragment=message)


async def publish_event(
    js: JetStreamContext,
    subject: str,
    body: Message,
    *,
    event_id: str | None = None,
    msg_id: str | None = None,
) -> str:
    """Publishes `body` as the identity service would: a binary-mode CloudEvent."""
    event = CloudEvent(
        id=event_id or str(uuid.uuid4()),
        type=subject,
        source="/cdp/identity",
        data=body.SerializeToString(),
        data_schema=body.DESCRIPTOR.full_name,
    )
    headers = event.headers()
    if msg_id is not None:
        headers["Nats-Msg-Id"] = msg_id
    await js.publish(subject, event.data, headers=headers)
    return event.id
