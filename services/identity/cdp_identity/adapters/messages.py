"""Domain events as the protobuf messages the bus carries."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.identity.v1 import identity_events_pb2 as events_pb2
from cdp_bus import OutboxMessage
from cdp_bus.subjects import (
    IDENTITY_CREATED,
    IDENTITY_FORGOTTEN,
    IDENTITY_MERGED,
    IDENTITY_UNMERGED,
)
from cdp_identity.domain.events import (
    CustomerCreated,
    CustomersMerged,
    CustomersUnmerged,
    IdentityEvent,
)

SOURCE = "/cdp/identity"


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def to_outbox(event: IdentityEvent) -> OutboxMessage:
    subject: str
    body: Message
    if isinstance(event, CustomerCreated):
        subject, about = IDENTITY_CREATED, event.customer_id
        body = events_pb2.CustomerCreated(
            customer_id=event.customer_id,
            identity_types=list(event.identity_types),
            source_platform=event.source_platform,
            occurred_at=_timestamp(event.occurred_at),
        )
    elif isinstance(event, CustomersMerged):
        subject, about = IDENTITY_MERGED, event.survivor_customer_id
        body = events_pb2.CustomersMerged(
            merge_id=event.merge_id,
            survivor_customer_id=event.survivor_customer_id,
            merged_customer_id=event.merged_customer_id,
            matched_on=list(event.matched_on),
            reason=event.reason,
            occurred_at=_timestamp(event.occurred_at),
        )
    elif isinstance(event, CustomersUnmerged):
        subject, about = IDENTITY_UNMERGED, event.survivor_customer_id
        body = events_pb2.CustomersUnmerged(
            merge_id=event.merge_id,
            survivor_customer_id=event.survivor_customer_id,
            restored_customer_id=event.restored_customer_id,
            occurred_at=_timestamp(event.occurred_at),
        )
    else:
        subject, about = IDENTITY_FORGOTTEN, event.customer_id
        body = events_pb2.CustomerForgotten(
            customer_id=event.customer_id,
            merged_customer_ids=list(event.merged_customer_ids),
            email_md5_hashes=list(event.email_md5_hashes),
            occurred_at=_timestamp(event.occurred_at),
        )
    return OutboxMessage.of_proto(
        subject, body, source=SOURCE, about=about, time=event.occurred_at
    )
