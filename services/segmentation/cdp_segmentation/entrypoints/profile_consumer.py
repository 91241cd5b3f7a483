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
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext
from opentelemetry import trace

from cdp.profile.v1 import profile_events_pb2
from cdp_bus import DurableConsumer, PoisonMessage, ReceivedEvent
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


def _customer(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise PoisonMessage("customer_id is not a UUID") from None


def _time(stamp: Timestamp, fallback: datetime) -> datetime:
    if stamp.ByteSize() == 0:
        return fallback
    return stamp.ToDatetime(tzinfo=UTC)


def decode(received: ReceivedEvent) -> ProfileEvent:
    """The domain event a message carries; PoisonMessage when it carries none."""
    fallback = received.event.time or datetime.now(UTC)
    if received.subject == PROFILE_UPDATED:
        updated = received.decode(profile_events_pb2.ProfileUpdated)
        return ProfileChanged(
            message_id=received.event.id,
            customer_id=_customer(updated.customer_id),
            version=updated.version,
            attributes=json_format.MessageToDict(updated.attributes),
            sources={change.path: change.source for change in updated.changes},
            occurred_at=_time(updated.occurred_at, fallback),
        )
    if received.subject == PROFILE_DELETED:
        deleted = received.decode(profile_events_pb2.ProfileDeleted)
        return ProfileRemoved(
            message_id=received.event.id,
            customer_id=_customer(deleted.customer_id),
            merged_into=deleted.merged_into_customer_id,
            occurred_at=_time(deleted.occurred_at, fallback),
        )
    raise PoisonMessage(f"no handler for subject {received.subject}")


def profile_consumer(
    js: JetStreamContext, handler: ProfileEventHandler, *, tracer: trace.Tracer, batch_size: int
) -> DurableConsumer:
    async def handle(batch: list[ReceivedEvent]) -> None:
        events: list[ProfileEvent] = []
        for received in batch:
            try:
                events.append(decode(received))
            except PoisonMessage as error:
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
