"""The ConnectorService gRPC servicer: proto -> command -> connector -> proto, nothing more."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp_errors import FieldViolation, InvalidArgument
from cdp_grpc.structs import struct_to_dict
from cdp_mailchimp_connector.domain.events import to_member_event
from cdp_mailchimp_connector.domain.model import (
    MAX_MEMBERS_PER_BATCH,
    FailedOperation,
    FieldKind,
    FieldSpec,
    HealthStatus,
    RecordOutcome,
    SegmentSync,
)
from cdp_mailchimp_connector.domain.profiles import RawProfile
from cdp_mailchimp_connector.service_layer.connector import MailchimpConnector

MAX_PROFILES = 50_000
MAX_EVENTS = 5_000
DEFAULT_PAGE = 100

_KINDS = {
    connector_pb2.FIELD_TYPE_TEXT: FieldKind.TEXT,
    connector_pb2.FIELD_TYPE_NUMBER: FieldKind.NUMBER,
    connector_pb2.FIELD_TYPE_DATE: FieldKind.DATE,
    connector_pb2.FIELD_TYPE_BOOLEAN: FieldKind.BOOLEAN,
    connector_pb2.FIELD_TYPE_PHONE: FieldKind.PHONE,
    connector_pb2.FIELD_TYPE_ADDRESS: FieldKind.ADDRESS,
}
_STATUSES = {
    HealthStatus.HEALTHY: connector_pb2.CONNECTION_STATUS_HEALTHY,
    HealthStatus.DEGRADED: connector_pb2.CONNECTION_STATUS_DEGRADED,
    HealthStatus.DOWN: connector_pb2.CONNECTION_STATUS_DOWN,
}


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _result(outcome: RecordOutcome) -> connector_pb2.RecordResult:
    return connector_pb2.RecordResult(
        key=outcome.key, success=outcome.success, error=outcome.error,
        permanent=outcome.permanent,
    )


def _failed(operation: FailedOperation) -> connector_pb2.FailedOperation:
    return connector_pb2.FailedOperation(
        id=operation.id,
        operation=operation.kind.value,
        subject_id=operation.subject_id,
        error=operation.error,
        permanent=operation.permanent,
        attempts=operation.attempts,
        first_failed_at=_timestamp(operation.first_failed_at),
        last_failed_at=_timestamp(operation.last_failed_at),
    )


def _limit(count: int, limit: int, field: str) -> None:
    if count > limit:
        raise InvalidArgument.single(field, f"has {count} entries; the limit is {limit}")


def _raw_profiles(request: connector_pb2.PushProfilesRequest) -> list[RawProfile]:
    return [
        RawProfile(p.customer_id, p.email, struct_to_dict(p.payload)) for p in request.profiles
    ]


class ConnectorServicer(connector_pb2_grpc.ConnectorServiceServicer):
    def __init__(self, connector: MailchimpConnector) -> None:
        self._connector = connector

    async def PushProfiles(
        self,
        request: connector_pb2.PushProfilesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.PushProfilesResponse:
        _limit(len(request.profiles), MAX_PROFILES, "profiles")
        if len(request.profiles) <= MAX_MEMBERS_PER_BATCH:
            profiles = _raw_profiles(request)
        else:
            # Reading thousands of payloads would stall the event loop, and with it every
            # Mailchimp call waiting to complete; a worker thread shares the interpreter.
            profiles = await asyncio.to_thread(_raw_profiles, request)
        outcomes = await self._connector.push_profiles(profiles)
        response = connector_pb2.PushProfilesResponse()
        add = response.results.add  # several times faster than a message per result
        for o in outcomes:
            add(key=o.key, success=o.success, error=o.error, permanent=o.permanent)
        return response

    async def EnsureFields(
        self,
        request: connector_pb2.EnsureFieldsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.EnsureFieldsResponse:
        violations = [
            FieldViolation(f"fields[{i}].type", "is required")
            for i, f in enumerate(request.fields) if f.type not in _KINDS
        ]
        if violations:
            raise InvalidArgument(violations)
        result = await self._connector.ensure_fields(
            [FieldSpec(f.tag.strip().upper(), f.name, _KINDS[f.type]) for f in request.fields]
        )
        return connector_pb2.EnsureFieldsResponse(
            created=list(result.created), existing=list(result.existing)
        )

    async def DeliverEvents(
        self,
        request: connector_pb2.DeliverEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.DeliverEventsResponse:
        _limit(len(request.events), MAX_EVENTS, "events")
        violations = [
            FieldViolation(f"events[{i}].id", "is required")
            for i, e in enumerate(request.events) if not e.id.strip()
        ]
        if violations:
            raise InvalidArgument(violations)
        items = []
        for event in request.events:
            converted = to_member_event(
                event.id,
                event.type,
                event.identifiers.email,
                struct_to_dict(event.properties),
                event.timestamp.ToDatetime(tzinfo=UTC)
                if event.HasField("timestamp") else None,
            )
            items.append(converted if not isinstance(converted, str) else (event.id, converted))
        outcomes = await self._connector.deliver_events(items)
        return connector_pb2.DeliverEventsResponse(results=[_result(o) for o in outcomes])

    async def SyncSegmentMembership(
        self,
        request: connector_pb2.SyncSegmentMembershipRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.SyncSegmentMembershipResponse:
        result = await self._connector.sync_segment(
            SegmentSync(
                request.segment_id,
                request.segment_name,
                tuple((m.customer_id, m.email) for m in request.members_to_add),
                tuple((m.customer_id, m.email) for m in request.members_to_remove),
                request.full_resync,
            )
        )
        return connector_pb2.SyncSegmentMembershipResponse(
            platform_segment_id=result.platform_segment_id,
            members_added=result.added,
            members_removed=result.removed,
            failures=[_result(f) for f in result.failures],
        )

    async def FetchCustomer(
        self,
        request: connector_pb2.FetchCustomerRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.FetchCustomerResponse:
        member = await self._connector.fetch_customer(request.email)
        if member is None:
            return connector_pb2.FetchCustomerResponse(found=False)
        record = Struct()
        record.update(member)
        return connector_pb2.FetchCustomerResponse(found=True, record=record)

    async def DeleteCustomer(
        self,
        request: connector_pb2.DeleteCustomerRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.DeleteCustomerResponse:
        deleted = await self._connector.delete_customer(
            request.customer_id, [h.strip() for h in request.email_md5_hashes]
        )
        return connector_pb2.DeleteCustomerResponse(records_deleted=deleted)

    async def GetConnectorHealth(
        self,
        request: connector_pb2.GetConnectorHealthRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.GetConnectorHealthResponse:
        health = await self._connector.health()
        return connector_pb2.GetConnectorHealthResponse(
            platform="mailchimp",
            status=_STATUSES[health.status],
            latency_ms=health.latency_ms,
            message=health.message,
            checked_at=_timestamp(health.checked_at),
            circuit_state=health.circuit_state,
        )

    async def ListFailedOperations(
        self,
        request: connector_pb2.ListFailedOperationsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.ListFailedOperationsResponse:
        if request.limit < 0:
            raise InvalidArgument.single("limit", "must not be negative")
        operations, total = await self._connector.list_failed(
            limit=min(request.limit or DEFAULT_PAGE, 1000),
            include_permanent=request.include_permanent,
        )
        return connector_pb2.ListFailedOperationsResponse(
            operations=[_failed(o) for o in operations], total=total
        )

    async def RetryFailedOperations(
        self,
        request: connector_pb2.RetryFailedOperationsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> connector_pb2.RetryFailedOperationsResponse:
        result = await self._connector.retry_failed(list(request.operation_ids))
        return connector_pb2.RetryFailedOperationsResponse(
            retried=result.retried,
            succeeded=result.succeeded,
            still_failing=[_failed(o) for o in result.still_failing],
        )
