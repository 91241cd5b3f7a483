"""NATS consumers of the event router: triggers, and identity changes."""

from __future__ import annotations

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_events_pb2
from cdp_bus import PoisonMessage, ReceivedEvent
from cdp_bus.subjects import IDENTITY_FORGOTTEN, IDENTITY_MERGED, IDENTITY_UNMERGED
from cdp_event_router.service_layer.identity_changes import IdentityFollower
from cdp_event_router.service_layer.triggers import TriggerRunner


class TriggerHandler:
    """Batches of broadcast events -> the triggers they fire."""

    def __init__(self, runner: TriggerRunner) -> None:
        self._runner = runner

    async def __call__(self, batch: list[ReceivedEvent]) -> None:
        pairs: list[tuple[str, str]] = []
        for received in batch:
            # The customer travels in ce-subject; the type in ce-type: no need to decode the
            # body to know which triggers fire.
            pairs.append((received.event.type, received.event.subject))
        await self._runner.run(pairs)


class IdentityHandler:
    def __init__(self, follower: IdentityFollower) -> None:
        self._follower = follower

    async def __call__(self, received: ReceivedEvent) -> None:
        data = received.event.data
        try:
            if received.subject == IDENTITY_MERGED:
                merged = identity_events_pb2.CustomersMerged.FromString(data)
                await self._follower.merged(merged.survivor_customer_id,
                                            merged.merged_customer_id)
            elif received.subject == IDENTITY_UNMERGED:
                unmerged = identity_events_pb2.CustomersUnmerged.FromString(data)
                await self._follower.unmerged(unmerged.restored_customer_id)
            elif received.subject == IDENTITY_FORGOTTEN:
                forgotten = identity_events_pb2.CustomerForgotten.FromString(data)
                await self._follower.forgotten(
                    [forgotten.customer_id, *forgotten.merged_customer_ids])
        except ValueError as error:  # protobuf DecodeError is a ValueError
            raise PoisonMessage(f"undecodable identity event: {error}") from error


def decode_event(data: bytes) -> events_pb2.Event:
    return events_pb2.Event.FromString(data)
