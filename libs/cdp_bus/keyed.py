"""In order per customer, without head-of-line blocking.

Existing routers keep a customer's events in order by stopping a queue at the first failure,
and then one slow customer or one failing destination holds everyone up. `KeyedConsumer`
keeps one small FIFO per key (the customer id, from `ce-subject`): a key's messages are
applied strictly one after another, different keys run concurrently, and a key whose
handler fails waits alone, with backoff, while every other key carries on. Acknowledgement
is per message, so nothing is acknowledged before it was applied; after a restart JetStream
redelivers whatever was not, in stream order, and per-key order survives that too.
Handlers are idempotent by event id (the Inbox), which makes redelivery harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from cdp_bus.consumer import PoisonMessage, ReceivedEvent
from cdp_bus.envelope import CloudEvent
from cdp_bus.subjects import dead_letter_subject
from cdp_bus.tracing import consumer_span
from cdp_telemetry.pii import redact

logger = logging.getLogger(__name__)

Handler = Callable[[ReceivedEvent], Awaitable[None]]


@dataclass
class _Lane:
    queue: deque[Msg] = field(default_factory=deque)
    failures: int = 0


class KeyedConsumer:
    """A durable pull consumer applying `handler` in order per key, concurrently across keys.

    Args:
        max_buffered: messages held in memory at most (fetching pauses above it); also the
            consumer's max_ack_pending.
        concurrency: keys applied at the same time.
        retry_delays: seconds a failing key waits before its next attempt (last repeats).
        max_attempts: attempts before a message is dead-lettered and its key moves on.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        subjects: Sequence[str],
        handler: Handler,
        tracer: trace.Tracer,
        max_buffered: int = 2000,
        concurrency: int = 32,
        retry_delays: Sequence[float] = (0.5, 2.0, 10.0, 30.0, 60.0),
        max_attempts: int = 10,
        ack_wait_seconds: float = 30.0,
    ) -> None:
        self._js = js
        self._stream = stream
        self.durable = durable
        self._subjects = list(subjects)
        self._handler = handler
        self._tracer = tracer
        self._max_buffered = max_buffered
        self._slots = asyncio.Semaphore(concurrency)
        self._retry_delays = list(retry_delays)
        self._max_attempts = max_attempts
        self._ack_wait = ack_wait_seconds
        self._lanes: dict[str, _Lane] = {}
        self._workers: set[asyncio.Task[None]] = set()
        # Stream sequences held now: JetStream redelivers a message whose ack wait ran out
        # while its key was backing off; the copy must not be applied a second time.
        self._held: set[int] = set()
        self._room = asyncio.Event()
        self._room.set()
        self.handled_total = 0
        self.dead_lettered_total = 0

    @staticmethod
    def key_of(message: Msg) -> str:
        headers = message.headers or {}
        return headers.get("ce-subject") or headers.get("ce-id") or ""

    def _config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=self._max_buffered,
            filter_subjects=self._subjects if len(self._subjects) > 1 else None,
            filter_subject=self._subjects[0] if len(self._subjects) == 1 else None,
        )

    @property
    def buffered(self) -> int:
        return len(self._held)

    async def run(self) -> None:
        subscription = await self._js.pull_subscribe(
            self._subjects[0], durable=self.durable, stream=self._stream, config=self._config()
        )
        try:
            while True:
                await self._room.wait()
                room = self._max_buffered - len(self._held)
                try:
                    messages = await subscription.fetch(max(1, min(room, 256)), timeout=1.0)
                except (TimeoutError, NatsTimeoutError):
                    continue
                except NatsError as error:
                    # NATS restarting: the client reconnects by itself and unacknowledged
                    # messages stay on the server, so fetching again later loses nothing.
                    logger.warning("fetch from %s failed, retrying: %s", self.durable, error)
                    await asyncio.sleep(self._retry_delays[0])
                    continue
                for message in messages:
                    self._accept(message)
        finally:
            for worker in list(self._workers):
                worker.cancel()
            for worker in list(self._workers):
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await subscription.unsubscribe()

    def _accept(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream if message.metadata else id(message)
        if sequence in self._held:
            return  # a redelivered copy of a message still waiting in its lane
        self._held.add(sequence)
        if len(self._held) >= self._max_buffered:
            self._room.clear()
        key = self.key_of(message)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            lane.queue.append(message)
            worker = asyncio.create_task(self._drain(key, lane))
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        else:
            lane.queue.append(message)

    def _release(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream if message.metadata else id(message)
        self._held.discard(sequence)
        if len(self._held) < self._max_buffered:
            self._room.set()

    async def _drain(self, key: str, lane: _Lane) -> None:
        async with self._slots:
            while lane.queue:
                message = lane.queue[0]
                if await self._apply(message, lane):
                    lane.queue.popleft()
                    self._release(message)
                    lane.failures = 0
                    continue
                # This key waits; the others do not. Keep JetStream from redelivering the
                # waiting messages meanwhile.
                delay = self._retry_delays[min(lane.failures - 1, len(self._retry_delays) - 1)]
                for waiting in lane.queue:
                    with contextlib.suppress(Exception):
                        await waiting.in_progress()
                await asyncio.sleep(delay)
        self._lanes.pop(key, None)

    async def _apply(self, message: Msg, lane: _Lane) -> bool:
        """True when the message is done with (applied, or dead-lettered)."""
        headers = message.headers or {}
        message_id = headers.get("ce-id") or ""
        attempt = (message.metadata.num_delivered if message.metadata else 1) + lane.failures
        with consumer_span(self._tracer, message.subject, headers, message_id=message_id,
                           consumer=self.durable) as span:
            try:
                try:
                    event = CloudEvent.from_message(headers, message.data)
                except ValueError as error:
                    raise PoisonMessage(str(error)) from error
                await self._handler(ReceivedEvent(message.subject, event, attempt))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                lane.failures += 1
                if isinstance(error, PoisonMessage) or lane.failures >= self._max_attempts:
                    await self._dead_letter(message, attempt, error)
                    return True
                logger.warning("delivery for one customer failed (attempt %d), that customer "
                               "waits: %s", attempt, redact(str(error))[:300])
                return False
        try:
            await message.ack()
        except Exception as error:
            # Applied but not acknowledged (NATS away): JetStream redelivers it later, and the
            # handler's idempotency makes that copy a no-op. The lane must move on either way.
            logger.warning("ack on %s failed; it will be redelivered and skipped: %s",
                           message.subject, error)
        self.handled_total += 1
        return True

    async def _dead_letter(self, message: Msg, attempt: int, error: Exception) -> None:
        reason = redact(f"{type(error).__name__}: {error}")[:500]
        headers = dict(message.headers or {})
        headers.pop("Nats-Msg-Id", None)
        headers.update({"cdp-dead-letter-reason": reason,
                        "cdp-original-subject": message.subject,
                        "cdp-attempts": str(attempt)})
        await self._js.publish(dead_letter_subject(self.durable), message.data, headers=headers)
        await message.term()
        self.dead_lettered_total += 1
        logger.error("dead-lettered a message on %s after %d attempts: %s", message.subject,
                     attempt, reason)
