"""The suite's event bus: NATS JetStream with a transactional outbox and durable consumers."""

from cdp_bus.connection import (
    NatsSettings,
    check_nats,
    close_nats,
    connect_nats,
    ensure_streams,
)
from cdp_bus.consumer import DurableConsumer, PoisonMessage, ReceivedEvent
from cdp_bus.envelope import CloudEvent
from cdp_bus.inbox import Inbox
from cdp_bus.outbox import OutboxMessage, OutboxRelay, SqlOutbox

__all__ = [
    "CloudEvent",
    "DurableConsumer",
    "Inbox",
    "NatsSettings",
    "OutboxMessage",
    "OutboxRelay",
    "PoisonMessage",
    "ReceivedEvent",
    "SqlOutbox",
    "check_nats",
    "close_nats",
    "connect_nats",
    "ensure_streams",
]
