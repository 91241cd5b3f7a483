"""Domain events as the protobuf messages the bus carries."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cdp.profile.v1 import profile_events_pb2
from cdp_bus import OutboxMessage
from cdp_bus.subjects import PROFILE_DELETED, PROFILE_UPDATED
from cdp_grpc.structs import to_struct, to_value
from cdp_profile.domain.events import ProfileDeleted, ProfileEvent, ProfileUpdated

SOURCE = "/cdp/profile"


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _updated(event: ProfileUpdated) -> profile_events_pb2.ProfileUpdated:
    body = profile_events_pb2.ProfileUpdated(
        customer_id=event.customer_id,
        version=event.version,
        attributes=to_struct(event.attributes),
        occurred_at=timestamp(event.occurred_at),
    )
    for change in event.changes:
        item = body.changes.add(path=change.path, source=change.source)
        if change.old_value is not None:
            item.old_value.CopyFrom(to_value(change.old_value))
        if change.new_value is not None:
            item.new_value.CopyFrom(to_value(change.new_value))
    return body


def to_outbox(event: ProfileEvent) -> OutboxMessage:
    if isinstance(event, ProfileUpdated):
        return OutboxMessage.of_proto(
            PROFILE_UPDATED,
            _updated(event),
            source=SOURCE,
            about=event.customer_id,
            time=event.occurred_at,
        )
    deleted: ProfileDeleted = event
    return OutboxMessage.of_proto(
        PROFILE_DELETED,
        profile_events_pb2.ProfileDeleted(
            customer_id=deleted.customer_id,
            merged_into_customer_id=deleted.merged_into,
            occurred_at=timestamp(deleted.occurred_at),
        ),
        source=SOURCE,
        about=deleted.customer_id,
        time=deleted.occurred_at,
    )
