"""The durable consumer of `cdp.profile.updated` and `cdp.profile.deleted`.

Batches of events are applied in one transaction each (`ProfileEventHandler.apply`). A
message whose body cannot be read can never be applied: it goes to the dead-letter subject
with the reason, and the rest of its batch is applied.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from opentelemetry import trace

from cdp.profile.v1 import profile_events_pb2
from cdp_bus import DurableConsumer, ReceivedEvent
from cdp_bus.envelope import JSON
from cdp_bus.subjects import PROFILE_DELETED, PROFILE_UPDATED, dead_letter_subject
from cdp_segmentation.service_layer.profiles import (
    ProfileChanged,
    ProfileEvent,
    ProfileEventHandler,
    ProfileRemoved,
)

logger = logging.getLogger(__name__)

CONSUMER = "segmentation-profiles"
STREAM = "CDP_PROFILE"


class Unreadable(ValueError):
    pass


def _parse(received: ReceivedEvent, message: Message) -> None:
    try:
        if received.event.content_type.startswith(JSON):
            json_format.Parse(received.event.data, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(received.event.data)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as error:
        raise Unreadable(
            f"{received.subject} body is not a {message.DESCRIPTOR.full_name}: "
            f"{type(error).__name__}"
        ) from None


def _customer(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Unreadable("customer_id is not a UUID") from None


def _time(stamp: Timestamp, fallback: datetime) -> datetime:
    if stamp.ByteSize() == 0:
        return fallback
    return stamp.ToDatetime(tzinfo=UTC)


def decode(received: ReceivedEvent) -> ProfileEvent:
    """The domain event a message carries; Unreadable when it carries none."""
    fallback = received.event.time or datetime.now(UTC)
    if received.subject == PROFILE_UPDATED:
        updated = profile_events_pb2.ProfileUpdated()
        _parse(received, updated)
        return ProfileChanged(
            message_id=received.event.id,
            customer_id=_customer(updated.customer_id),
            version=updated.version,
            attributes=json_format.MessageToDict(updated.attributes),
            sources={change.path: change.source for change in updated.changes},
            occurred_at=_time(updated.occurred_at, fallback),
        )
    if received.subject == PROFILE_DELETED:
        deleted = profile_events_pb2.ProfileDeleted()
        _parse(received, deleted)
        return ProfileRemoved(
            message_id=received.event.id,
            customer_id=_customer(deleted.customer_id),
            merged_into=deleted.merged_into_customer_id,
            occurred_at=_time(deleted.occurred_at, fallback),
        )
    raise Unreadable(f"no handler for subject {received.subject}")


def profile_consumer(
    js: JetStreamContext, handler: ProfileEventHandler, *, tracer: trace.Tracer, batch_size: int
) -> DurableConsumer:
    async def handle(batch: list[ReceivedEvent]) -> None:
        events: list[ProfileEvent] = []
        for received in batch:
            try:
                events.append(decode(received))
            except Unreadable as error:
                logger.error("dead-lettered an unreadable profile event %s: %s",
                             received.event.id, error)
                await js.publish(
                    dead_letter_subject(CONSUMER),
                    received.event.data,
                    headers={
                        "cdp-dead-letter-reason": str(error)[:500],
                        "cdp-original-subject": received.subject,
                        "ce-id": received.event.id,
                    },
                )
        await handler.apply(events)

    return DurableConsumer(
        js,
        stream=STREAM,
        durable=CONSUMER,
        subjects=[PROFILE_UPDATED, PROFILE_DELETED],
        batch_handler=handle,
        tracer=tracer,
        batch_size=batch_size,
    )
