"""Events the router routes to the `email` role, applied to Mailchimp once each.

The router publishes them on `cdp.routed.email.<type>`; a keyed consumer hands them over one
customer at a time, in order. Each becomes a Mailchimp member event through the same call
`DeliverEvents` makes. What happens to one:

- already applied (its id is in the inbox): nothing, so a redelivery or a replay is harmless;
- delivered: its id goes into the inbox;
- refused for good (no email known, not a member of the audience, an unusable name): kept as
  a permanent failed operation for review, and the customer's next event goes ahead;
- failed for now (Mailchimp down, 5xx, 429, circuit open): raised, so that this customer's
  lane waits and tries again while every other customer's events flow; after
  `max_attempts` it is kept as a retryable failed operation (RetryFailedOperations runs it
  again) and the lane moves on, rather than one customer waiting for ever.

The inbox is written after Mailchimp accepted the event: a crash between the two delivers
that one event again on restart (Mailchimp has no idempotency key for member events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from cdp_errors import Unavailable
from cdp_mailchimp_connector.domain.events import to_member_event
from cdp_mailchimp_connector.domain.model import NewFailure, OperationKind
from cdp_mailchimp_connector.domain.routed import RoutedEvent
from cdp_mailchimp_connector.service_layer.connector import MailchimpConnector, event_failure
from cdp_mailchimp_connector.service_layer.ports import CustomerDirectory, ProcessedEvents

logger = logging.getLogger(__name__)


class RoutedEventApplier:
    def __init__(
        self,
        connector: MailchimpConnector,
        processed: ProcessedEvents,
        directory: CustomerDirectory | None,
        *,
        max_attempts: int = 10,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connector = connector
        self._processed = processed
        self._directory = directory
        self._max_attempts = max_attempts
        self._clock = clock
        self.delivered_total = 0
        self.skipped_total = 0
        self.kept_total = 0

    async def apply(self, event: RoutedEvent, attempt: int) -> None:
        """Applies `event` once; raises Unavailable when this customer should wait and retry."""
        if await self._processed.seen(event.event_id):
            self.skipped_total += 1
            return
        email = event.email or await self._email_of(event.customer_id)
        converted = to_member_event(event.event_id, event.type, email, event.properties,
                                    event.occurred_at)
        if isinstance(converted, str):
            await self._keep(NewFailure(
                OperationKind.DELIVER_EVENT, event.event_id,
                {"email": email, "name": event.type, "properties": event.properties,
                 "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None},
                converted, True,
            ))
            return
        outcome = await self._connector.deliver_event(converted)
        if outcome.success:
            await self._processed.remember(event.event_id)
            self.delivered_total += 1
            return
        if outcome.permanent or attempt >= self._max_attempts:
            await self._keep(event_failure(converted, outcome.error, outcome.permanent))
            return
        raise Unavailable(f"Mailchimp did not take event {event.event_id}: {outcome.error}")

    async def _email_of(self, customer_id: str) -> str:
        if not customer_id or self._directory is None:
            return ""
        return await self._directory.primary_email(customer_id)

    async def _keep(self, failure: NewFailure) -> None:
        await self._connector.failures.record([failure], self._clock())
        await self._processed.remember(failure.subject_id)
        self.kept_total += 1
        logger.warning("routed event %s kept as a %s failed operation: %s", failure.subject_id,
                       "permanent" if failure.permanent else "retryable", failure.error[:300])
