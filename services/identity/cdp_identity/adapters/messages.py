"""Domain events as the protobuf messages the bus carries."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from cdp.identity.v1 import identity_events_pb2
from cdp_bus import OutboxMessage
from cdp_bus.subjects import IDENTITY_CREATED
from cdp_identity.domain.events import CustomerCreated

SOURCE = "/cdp/identity"


def _timestamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


def to_outbox(event: CustomerCreated) -> OutboxMessage:
    body = identity_events_pb2.CustomerCreated(
        customer_id=event.customer_id,
        identity_types=list(event.identity_types),
        source_platform=event.source_platform,
        occurred_at=_timestamp(event.occurred_at),
    )
    return OutboxMessage.of_proto(
        IDENTITY_CREATED, body, source=SOURCE, about=event.customer_id, time=event.occurred_at
    )
