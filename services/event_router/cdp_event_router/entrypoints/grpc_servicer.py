"""The EventRouterService gRPC servicer: proto -> router -> proto."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp_db import Database, TracedConnection
from cdp_errors import InvalidArgument, NotFound
from cdp_event_router.adapters import codec, event_store
from cdp_event_router.domain.model import EventFilter, PublishOutcome, PublishStatus, StoredEvent
from cdp_event_router.service_layer.ingest import EventIngest
from cdp_event_router.service_layer.replay import EventReplayer

Context = grpc.aio.ServicerContext[Any, Any]
MAX_BATCH = 10_000
MAX_FAILED = 1000

_STATUS = {
    PublishStatus.ACCEPTED: events_pb2.PUBLISH_STATUS_ACCEPTED,
    PublishStatus.DUPLICATE: events_pb2.PUBLISH_STATUS_DUPLICATE,
    PublishStatus.REJECTED: events_pb2.PUBLISH_STATUS_REJECTED,
    PublishStatus.QUARANTINED: events_pb2.PUBLISH_STATUS_QUARANTINED,
}


def _result(outcome: PublishOutcome) -> events_pb2.PublishEventResult:
    result = events_pb2.PublishEventResult(
        event_id=outcome.event_id, status=_STATUS[outcome.status],
        customer_id=outcome.customer_id, targets=outcome.targets,
    )
    if outcome.violations:
        result.error.CopyFrom(common_pb2.ItemError(
            code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
            message="; ".join(f"{v.field}: {v.description}" for v in outcome.violations),
            field_violations=[common_pb2.FieldViolation(field=v.field, description=v.description)
                              for v in outcome.violations],
        ))
    return result


def _filter(message: events_pb2.EventFilter) -> EventFilter:
    if message.customer_id:
        try:
            uuid.UUID(message.customer_id)
        except ValueError:
            raise InvalidArgument.single("filter.customer_id",
                                         "is not a customer id (a UUID)") from None
    since = message.since.ToDatetime(tzinfo=UTC) if message.HasField("since") else None
    until = message.until.ToDatetime(tzinfo=UTC) if message.HasField("until") else None
    if since and until and since >= until:
        raise InvalidArgument.single("filter.until", "must be after filter.since")
    return EventFilter(customer_id=message.customer_id, types=tuple(message.types),
                       source=message.source, since=since, until=until)


def _current(stored: StoredEvent) -> events_pb2.Event:
    """The stored event with the customer it belongs to now (merges re-point events)."""
    message = codec.decode(stored.payload)
    message.customer_id = stored.customer_id
    return message


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


class EventRouterServicer(events_pb2_grpc.EventRouterServiceServicer):
    def __init__(self, ingest: EventIngest, replayer: EventReplayer, database: Database, *,
                 tracer: trace.Tracer) -> None:
        self._ingest = ingest
        self._replayer = replayer
        self._database = database
        self._tracer = tracer

    async def PublishEvent(self, request: events_pb2.PublishEventRequest,
                           context: Context) -> events_pb2.PublishEventResponse:
        (outcome,) = await self._ingest.publish([codec.from_proto(request.event)],
                                                paths=["event"])
        if outcome.violations:
            # Quarantined or not, the caller learns what was wrong; a quarantined event is
            # also kept for review (ListFailedEvents).
            raise InvalidArgument(outcome.violations)
        return events_pb2.PublishEventResponse(
            event_id=outcome.event_id, status=_STATUS[outcome.status],
            customer_id=outcome.customer_id, targets=outcome.targets,
        )

    async def PublishEvents(self, request: events_pb2.PublishEventsRequest,
                            context: Context) -> events_pb2.PublishEventsResponse:
        if len(request.events) > MAX_BATCH:
            raise InvalidArgument.single(
                "events", f"has {len(request.events)} entries; the limit is {MAX_BATCH}")
        outcomes = await self._ingest.publish([codec.from_proto(e) for e in request.events])
        return events_pb2.PublishEventsResponse(results=[_result(o) for o in outcomes])

    async def GetEvent(self, request: events_pb2.GetEventRequest,
                       context: Context) -> events_pb2.GetEventResponse:
        if not request.event_id:
            raise InvalidArgument.single("event_id", "is required")
        async with self._database.pool.acquire() as raw:
            stored = await event_store.get_event(TracedConnection(raw, self._tracer),
                                                 request.event_id)
        if stored is None:
            raise NotFound("event", request.event_id[:128])
        return events_pb2.GetEventResponse(event=_current(stored), targets=stored.targets)

    async def ListEvents(self, request: events_pb2.ListEventsRequest,
                         context: Context) -> AsyncIterator[events_pb2.ListEventsResponse]:
        event_filter = _filter(request.filter)
        if request.limit < 0:
            raise InvalidArgument.single("limit", "must not be negative")
        async with self._database.pool.acquire() as raw:
            connection = TracedConnection(raw, self._tracer)
            async for _seq, stored in event_store.stream_events(connection, event_filter,
                                                                 limit=request.limit):
                yield events_pb2.ListEventsResponse(event=_current(stored))

    async def ReplayEvents(self, request: events_pb2.ReplayEventsRequest,
                           context: Context) -> events_pb2.ReplayEventsResponse:
        count = await self._replayer.replay(_filter(request.filter), request.target)
        return events_pb2.ReplayEventsResponse(events_replayed=count)

    async def ListFailedEvents(self, request: events_pb2.ListFailedEventsRequest,
                               context: Context) -> events_pb2.ListFailedEventsResponse:
        if request.limit < 0 or request.limit > MAX_FAILED:
            raise InvalidArgument.single("limit", f"must be between 0 and {MAX_FAILED}")
        async with self._database.pool.acquire() as raw:
            failed = await event_store.list_failed(TracedConnection(raw, self._tracer),
                                                   request.limit or 100)
        return events_pb2.ListFailedEventsResponse(events=[
            events_pb2.FailedEvent(
                event_id=f.event_id, type=f.type, source=f.source, raw_json=f.raw_json,
                violations=[common_pb2.FieldViolation(field=v.field, description=v.description)
                            for v in f.violations],
                received_at=_timestamp(f.received_at),
            )
            for f in failed
        ])
