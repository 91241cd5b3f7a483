"""Durable JetStream consumers with explicit acks, retries and a dead-letter subject.

Each consumer is a durable pull consumer: every replica of a service binds to the same
durable name and fetches from it, so JetStream spreads the messages over the replicas the way
a core-NATS queue group does, while keeping them until acknowledged. A handler that raises
gets the message again after a growing delay; after `max_deliver` attempts the message goes
to `cdp.deadletter.<consumer>` with the error, and is terminated so it stops blocking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from cdp_bus.envelope import JSON, CloudEvent
from cdp_bus.subjects import dead_letter_subject
from cdp_bus.tracing import consumer_span, propagate_context
from cdp_telemetry.pii import redact

logger = logging.getLogger(__name__)


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be applied (malformed, unknown
    version): it is dead-lettered at once instead of being retried."""


M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class ReceivedEvent:
    subject: str
    event: CloudEvent
    # 1 on first delivery.
    delivery_attempt: int

    def decode(self, message_type: type[M]) -> M:
        """The body as a `message_type`: protobuf, or JSON when the content type says so
        (CloudEvents allow both; unknown JSON fields are ignored). Raises PoisonMessage when
        the body is not one, since no retry can make it readable."""
        message = message_type()
        try:
            if self.event.content_type.startswith(JSON):
                json_format.Parse(self.event.data, message, ignore_unknown_fields=True)
            else:
                message.ParseFromString(self.event.data)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as error:
            raise PoisonMessage(
                f"{self.subject} body is not a {message.DESCRIPTOR.full_name}: "
                f"{type(error).__name__}"
            ) from None
        return message


Handler = Callable[[ReceivedEvent], Awaitable[None]]
BatchHandler = Callable[[list[ReceivedEvent]], Awaitable[None]]


class DurableConsumer:
    """Fetches from one durable consumer and applies `handler` to each message in order.

    Args:
        durable: the consumer's name, shared by every replica of the service.
        subjects: the stream subjects to receive (filter subjects).
        max_deliver: attempts before a message is dead-lettered.
        retry_delays: seconds to wait before redelivery after the 1st, 2nd, ... failure
            (the last one repeats).
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        subjects: Sequence[str],
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
        tracer: trace.Tracer,
        batch_size: int = 100,
        ack_wait_seconds: float = 30.0,
        max_deliver: int = 8,
        retry_delays: Sequence[float] = (0.5, 2.0, 10.0, 30.0, 60.0),
        deliver_new_only: bool = False,
    ) -> None:
        self._js = js
        self._stream = stream
        self.durable = durable
        self._subjects = list(subjects)
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        self._handler = handler
        self._batch_handler = batch_handler
        self._tracer = tracer
        self._batch_size = batch_size
        self._ack_wait = ack_wait_seconds
        self._max_deliver = max_deliver
        self._retry_delays = list(retry_delays)
        self._deliver_policy = DeliverPolicy.NEW if deliver_new_only else DeliverPolicy.ALL
        self.handled_total = 0
        self.dead_lettered_total = 0

    def _config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            deliver_policy=self._deliver_policy,
            # We dead-letter ourselves on the last attempt; the server bound is a backstop.
            max_deliver=self._max_deliver + 1,
            max_ack_pending=max(self._batch_size * 4, 1000),
            filter_subjects=self._subjects if len(self._subjects) > 1 else None,
            filter_subject=self._subjects[0] if len(self._subjects) == 1 else None,
        )

    async def run(self) -> None:
        """Consumes until cancelled.

        With a `batch_handler`, each fetched batch is applied in one call (one CONSUMER span
        linked to every message's trace): acknowledged together when the call succeeds,
        redelivered together when it fails. Handlers must then be idempotent per batch, as
        they are per message.
        """
        subscription = await self._js.pull_subscribe(
            self._subjects[0], durable=self.durable, stream=self._stream, config=self._config()
        )
        try:
            while True:
                try:
                    messages = await subscription.fetch(self._batch_size, timeout=1.0)
                except (TimeoutError, NatsTimeoutError):
                    continue
                if self._batch_handler is not None:
                    await self._handle_batch(messages)
                    continue
                for message in messages:
                    await self._handle(message)
        finally:
            await subscription.unsubscribe()

    async def _handle_batch(self, messages: list[Msg]) -> None:
        assert self._batch_handler is not None
        received: list[tuple[Msg, ReceivedEvent]] = []
        for message in messages:
            attempt = message.metadata.num_delivered if message.metadata else 1
            try:
                cloud_event = CloudEvent.from_message(message.headers, message.data)
            except ValueError as error:
                await self._on_failure(message, attempt, PoisonMessage(str(error)))
                continue
            received.append((message, ReceivedEvent(message.subject, cloud_event, attempt)))
        if not received:
            return
        links = [Link(propagate_context(m.headers)) for m, _ in received]
        with self._tracer.start_as_current_span(
            f"{self._subjects[0]} process", kind=SpanKind.CONSUMER, links=links,
            attributes={"messaging.system": "nats", "messaging.batch.message_count":
                        len(received), "messaging.consumer.group.name": self.durable},
        ) as span:
            try:
                await self._batch_handler([delivered for _, delivered in received])
            except asyncio.CancelledError:
                raise
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                for message, delivered in received:
                    await self._on_failure(message, delivered.delivery_attempt, error)
                return
        for message, _ in received:
            await message.ack()
        self.handled_total += len(received)

    async def _handle(self, message: Msg) -> None:
        attempt = message.metadata.num_delivered if message.metadata else 1
        headers = message.headers or {}
        message_id = headers.get("ce-id") or headers.get("Nats-Msg-Id") or ""
        with consumer_span(
            self._tracer, message.subject, headers, message_id=message_id, consumer=self.durable
        ) as span:
            try:
                try:
                    event = CloudEvent.from_message(headers, message.data)
                except ValueError as error:
                    raise PoisonMessage(str(error)) from error
                assert self._handler is not None
                await self._handler(ReceivedEvent(message.subject, event, attempt))
            except asyncio.CancelledError:
                # Not acknowledged: JetStream redelivers it to whoever runs next.
                raise
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                await self._on_failure(message, attempt, error)
                return
            await message.ack()
            self.handled_total += 1

    async def _on_failure(self, message: Msg, attempt: int, error: Exception) -> None:
        reason = redact(f"{type(error).__name__}: {error}")[:500]
        if attempt >= self._max_deliver or isinstance(error, PoisonMessage):
            headers = dict(message.headers or {})
            headers.pop("Nats-Msg-Id", None)
            headers.update(
                {
                    "cdp-dead-letter-reason": reason,
                    "cdp-original-subject": message.subject,
                    "cdp-attempts": str(attempt),
                }
            )
            await self._js.publish(dead_letter_subject(self.durable), message.data, headers=headers)
            await message.term()
            self.dead_lettered_total += 1
            logger.error(
                "dead-lettered a message on %s after %d attempts: %s",
                message.subject,
                attempt,
                reason,
            )
            return
        delay = self._retry_delays[min(attempt - 1, len(self._retry_delays) - 1)]
        logger.warning(
            "handler failed on %s (attempt %d), retrying in %.1f s: %s",
            message.subject,
            attempt,
            delay,
            reason,
        )
        await message.nak(delay=delay)
