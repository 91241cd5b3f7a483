"""The durable consumer of identity events: `cdp.identity.merged|unmerged|forgotten`.

Bodies are the identity contract's protobuf messages (JSON is accepted too, as CloudEvents
allow). A body that cannot be read, or that names no valid customer, can never be applied:
it is dead-lettered at once rather than retried.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from opentelemetry import trace

from cdp.identity.v1 import identity_events_pb2
from cdp_bus import DurableConsumer, PoisonMessage, ReceivedEvent
from cdp_bus.consumer import Handler
from cdp_bus.subjects import IDENTITY_FORGOTTEN, IDENTITY_MERGED, IDENTITY_UNMERGED
from cdp_errors import InvalidArgument
from cdp_profile.domain.ids import parse_customer_id
from cdp_profile.service_layer.identity_events import IdentityEventHandler

CONSUMER = "profile-identity"
STREAM = "CDP_IDENTITY"


def _customer(raw: str, field: str) -> str:
    try:
        return parse_customer_id(raw, field)
    except InvalidArgument as error:
        raise PoisonMessage(str(error)) from None


def handler_for(events: IdentityEventHandler) -> Handler:
    async def handle(received: ReceivedEvent) -> None:
        message_id = received.event.id
        if received.subject == IDENTITY_MERGED:
            merged = received.decode(identity_events_pb2.CustomersMerged)
            await events.customers_merged(
                message_id,
                survivor=_customer(merged.survivor_customer_id, "survivor_customer_id"),
                merged=_customer(merged.merged_customer_id, "merged_customer_id"),
                merge_id=merged.merge_id,
            )
        elif received.subject == IDENTITY_UNMERGED:
            unmerged = received.decode(identity_events_pb2.CustomersUnmerged)
            await events.customers_unmerged(
                message_id,
                survivor=_customer(unmerged.survivor_customer_id, "survivor_customer_id"),
                restored=_customer(unmerged.restored_customer_id, "restored_customer_id"),
                merge_id=unmerged.merge_id,
            )
        elif received.subject == IDENTITY_FORGOTTEN:
            forgotten = received.decode(identity_events_pb2.CustomerForgotten)
            await events.customer_forgotten(
                message_id,
                customer_id=_customer(forgotten.customer_id, "customer_id"),
                merged_customer_ids=[
                    _customer(raw, "merged_customer_ids") for raw in forgotten.merged_customer_ids
                ],
            )
        else:
            raise PoisonMessage(f"no handler for subject {received.subject}")

    return handle


def identity_consumer(
    js: JetStreamContext, events: IdentityEventHandler, *, tracer: trace.Tracer
) -> DurableConsumer:
    return DurableConsumer(
        js,
        stream=STREAM,
        durable=CONSUMER,
        subjects=[IDENTITY_MERGED, IDENTITY_UNMERGED, IDENTITY_FORGOTTEN],
        handler=handler_for(events),
        tracer=tracer,
    )
