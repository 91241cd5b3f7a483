"""Domain events as the protobuf messages the bus carries."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cdp.segmentation.v1 import segmentation_events_pb2
from cdp_bus import OutboxMessage
from cdp_bus.subjects import SEGMENT_MEMBERSHIP
from cdp_segmentation.domain.events import Change, MembershipChanged

SOURCE = "/cdp/segmentation"

_CHANGES = {
    Change.ENTERED: segmentation_events_pb2.MEMBERSHIP_CHANGE_ENTERED,
    Change.EXITED: segmentation_events_pb2.MEMBERSHIP_CHANGE_EXITED,
}


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def membership_message(event: MembershipChanged) -> OutboxMessage:
    """`cdp.segment.membership`, about the customer (ce-subject), never personal data."""
    return OutboxMessage.of_proto(
        SEGMENT_MEMBERSHIP,
        segmentation_events_pb2.SegmentMembershipChanged(
            segment_id=event.segment_id,
            customer_id=event.customer_id,
            change=_CHANGES[event.change],
            occurred_at=timestamp(event.occurred_at),
        ),
        source=SOURCE,
        about=event.customer_id,
        time=event.occurred_at,
    )
