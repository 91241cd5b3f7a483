"""The NATS side of the connector: events routed to the `email` role.

A durable `KeyedConsumer` on `cdp.routed.email.>` keyed by customer (`ce-subject`): one
customer's events are applied in order, customers run concurrently, and a customer whose
delivery fails waits alone. The connection is made (and remade) here, so the connector serves
its gRPC contract whether or not NATS is up; nothing is acknowledged before it was applied, so
whatever was in flight when NATS went away is redelivered once it is back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC

from cdp.events.v1 import events_pb2
from cdp_bus import (
    NatsSettings,
    PoisonMessage,
    ReceivedEvent,
    close_nats,
    connect_nats,
    ensure_streams,
)
from cdp_bus.keyed import KeyedConsumer
from cdp_bus.subjects import ROUTED_PREFIX, STREAMS
from cdp_errors import Unavailable
from cdp_grpc.structs import struct_to_dict
from cdp_mailchimp_connector.domain.routed import RoutedEvent
from cdp_mailchimp_connector.service_layer.routed_events import RoutedEventApplier
from cdp_mailchimp_connector.settings import RoutedEventsSettings
from cdp_telemetry import Telemetry

logger = logging.getLogger(__name__)

ROLE = "email"
ROUTED_STREAM = "CDP_ROUTED"


def routed_event(received: ReceivedEvent) -> RoutedEvent:
    """The routed event a message carries; PoisonMessage when its body is no Event."""
    try:
        event = events_pb2.Event.FromString(received.event.data)
    except ValueError as error:  # protobuf's DecodeError is a ValueError
        raise PoisonMessage(f"undecodable routed event: {error}") from error
    return RoutedEvent(
        event_id=event.id or received.event.id,
        type=event.type or received.event.type,
        customer_id=event.customer_id or received.event.subject,
        email=event.identifiers.email.strip(),
        properties=struct_to_dict(event.properties),
        occurred_at=(event.timestamp.ToDatetime(tzinfo=UTC)
                     if event.HasField("timestamp") else None),
    )


class RoutedEventHandler:
    def __init__(self, applier: RoutedEventApplier) -> None:
        self._applier = applier

    async def __call__(self, received: ReceivedEvent) -> None:
        await self._applier.apply(routed_event(received), received.delivery_attempt)


async def consume_routed_events(
    nats: NatsSettings,
    settings: RoutedEventsSettings,
    applier: RoutedEventApplier,
    telemetry: Telemetry,
    *,
    on_consuming: asyncio.Event | None = None,
) -> None:
    """Consumes until cancelled; connects, and reconnects after losing the connection."""
    handler = RoutedEventHandler(applier)
    delay = settings.reconnect_delay_seconds
    while True:
        try:
            client = await connect_nats(nats, name="cdp-mailchimp-connector")
        except Unavailable as error:
            logger.warning("routed events wait for NATS (%s); retrying in %.1f s", error, delay)
            await asyncio.sleep(delay)
            continue
        try:
            # Declared here too (idempotently), so the connector may start before the router.
            await ensure_streams(client.jetstream(),
                                 [s for s in STREAMS if s.name == ROUTED_STREAM],
                                 replicas=nats.stream_replicas)
            consumer = KeyedConsumer(
                client.jetstream(),
                stream=ROUTED_STREAM,
                durable=settings.durable,
                subjects=[f"{ROUTED_PREFIX}.{ROLE}.>"],
                handler=handler,
                tracer=telemetry.tracer("cdp.bus"),
                max_buffered=settings.max_buffered,
                concurrency=settings.concurrency,
                retry_delays=settings.retry_delays,
                max_attempts=settings.max_attempts,
                ack_wait_seconds=settings.ack_wait_seconds,
            )
            if on_consuming is not None:
                on_consuming.set()
            await consumer.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            # NATS lost while declaring or subscribing: start over. Unacknowledged messages
            # wait on the server meanwhile.
            logger.warning("routed-event consumer stopped (%s: %s); restarting in %.1f s",
                           type(error).__name__, error, delay)
        finally:
            await close_nats(client)
        await asyncio.sleep(delay)
