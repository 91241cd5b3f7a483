"""Domain events as the protobuf messages the bus carries."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache

from google.protobuf.struct_pb2 import NULL_VALUE, Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.profile.v1 import profile_events_pb2
from cdp_bus import OutboxMessage
from cdp_bus.subjects import PROFILE_DELETED, PROFILE_UPDATED
from cdp_grpc.structs import to_value
from cdp_profile.domain.events import ProfileDeleted, ProfileEvent, ProfileUpdated
from cdp_profile.domain.model import JsonValue, to_micros

SOURCE = "/cdp/profile"


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _set_value(target: Value, value: JsonValue) -> None:
    """Writes a JSON value into a Struct `Value` in place.

    `Struct.update` and `cdp_grpc.structs.to_value` go through protobuf's generic Python
    helpers (and `to_value` through a throwaway Struct); a profile-updated event carries a
    whole document and every changed value, so this writes the fields directly, dispatching
    on the exact type first (the JSON a fragment decodes to has no subclasses).
    """
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is int or kind is float:
        target.number_value = value
    elif kind is bool:
        target.bool_value = value
    elif kind is dict:
        if value:
            _set_struct(target.struct_value, value)
        else:
            target.struct_value.SetInParent()
    elif kind is list:
        if value:
            items = target.list_value.values
            for item in value:
                _set_value(items.add(), item)
        else:
            target.list_value.SetInParent()
    elif value is None:
        target.null_value = NULL_VALUE
    else:
        target.CopyFrom(to_value(value))


def _set_struct(target: Struct, document: dict[str, JsonValue]) -> None:
    fields = target.fields
    for key, value in document.items():
        _set_value(fields[key], value)


def document_struct(document: dict[str, JsonValue]) -> Struct:
    """`document` as a protobuf Struct (what `cdp_grpc.structs.to_struct` gives, faster)."""
    struct = Struct()
    _set_struct(struct, document)
    return struct


@lru_cache(maxsize=16)
def _seconds_and_micros(moment: datetime) -> tuple[int, int]:
    """Whole seconds and microseconds since the epoch (the events of one batch share it)."""
    return divmod(to_micros(moment), 1_000_000)


def _updated(event: ProfileUpdated) -> profile_events_pb2.ProfileUpdated:
    body = profile_events_pb2.ProfileUpdated(customer_id=event.customer_id, version=event.version)
    _set_struct(body.attributes, event.attributes)
    body.attributes.SetInParent()
    seconds, micros = _seconds_and_micros(event.occurred_at)
    body.occurred_at.seconds = seconds
    body.occurred_at.nanos = micros * 1000
    for change in event.changes:
        item = body.changes.add(path=change.path, source=change.source)
        if change.old_value is not None:
            _set_value(item.old_value, change.old_value)
        if change.new_value is not None:
            _set_value(item.new_value, change.new_value)
    return body


# Version-4 variant nibble: 10xx in binary.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _random_ids() -> Iterator[str]:
    """Random (version 4) UUIDs as text, drawing randomness for 256 at a time: one system
    call and no UUID object per message id."""
    while True:
        pool = os.urandom(16 * 256).hex()
        for at in range(0, len(pool), 32):
            h = pool[at : at + 32]
            yield f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_message_ids = _random_ids()


def new_message_id() -> str:
    return next(_message_ids)


def to_outbox(event: ProfileEvent) -> OutboxMessage:
    if isinstance(event, ProfileUpdated):
        return OutboxMessage.of_proto(
            PROFILE_UPDATED,
            _updated(event),
            source=SOURCE,
            message_id=new_message_id(),
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
