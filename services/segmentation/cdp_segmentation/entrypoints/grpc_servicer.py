"""The SegmentationService gRPC servicer: proto -> command -> handler -> proto, nothing more."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.segmentation.v1 import segmentation_pb2, segmentation_pb2_grpc
from cdp_segmentation.domain.criteria import to_document
from cdp_segmentation.domain.definitions import SegmentInput
from cdp_segmentation.domain.model import (
    Condition,
    Group,
    Logic,
    PlatformSyncStatus,
    RawCondition,
    RawGroup,
    ScheduleKind,
    SegmentView,
)
from cdp_segmentation.service_layer.segments import SegmentService
from cdp_segmentation.service_layer.sync import PlatformResult, SegmentSyncer

pb = segmentation_pb2

_LOGIC_IN = {
    pb.LOGICAL_OPERATOR_AND: "and",
    pb.LOGICAL_OPERATOR_OR: "or",
    pb.LOGICAL_OPERATOR_NOT: "not",
    pb.LOGICAL_OPERATOR_UNSPECIFIED: "",
}
_LOGIC_OUT = {
    Logic.AND: pb.LOGICAL_OPERATOR_AND,
    Logic.OR: pb.LOGICAL_OPERATOR_OR,
    Logic.NOT: pb.LOGICAL_OPERATOR_NOT,
}
_SCHEDULE_IN = {
    pb.SCHEDULE_KIND_REALTIME: "realtime",
    pb.SCHEDULE_KIND_HOURLY: "hourly",
    pb.SCHEDULE_KIND_DAILY: "daily",
    pb.SCHEDULE_KIND_CRON: "cron",
    pb.SCHEDULE_KIND_UNSPECIFIED: "",
}
_SCHEDULE_OUT = {
    ScheduleKind.REALTIME: pb.SCHEDULE_KIND_REALTIME,
    ScheduleKind.HOURLY: pb.SCHEDULE_KIND_HOURLY,
    ScheduleKind.DAILY: pb.SCHEDULE_KIND_DAILY,
    ScheduleKind.CRON: pb.SCHEDULE_KIND_CRON,
}


# ---- proto -> domain ------------------------------------------------------------------------


def json_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        return [json_value(item) for item in value.list_value.values]
    return json_format.MessageToDict(value.struct_value)


def raw_condition(message: pb.Condition) -> RawCondition:
    has_value = message.HasField("value")
    return RawCondition(
        field=message.field.strip(),
        operator=message.operator.strip(),
        value=json_value(message.value) if has_value else None,
        has_value=has_value,
        unit=message.unit.strip(),
        source=message.source.strip(),
    )


def raw_group(message: pb.Criteria) -> RawGroup:
    children: list[RawCondition | RawGroup | None] = []
    for criterion in message.conditions:
        kind = criterion.WhichOneof("node")
        if kind == "condition":
            children.append(raw_condition(criterion.condition))
        elif kind == "group":
            children.append(raw_group(criterion.group))
        else:
            children.append(None)
    return RawGroup(_LOGIC_IN.get(message.operator, str(message.operator)), tuple(children))


def segment_input(message: pb.Segment) -> SegmentInput:
    return SegmentInput(
        name=message.name,
        description=message.description,
        criteria=raw_group(message.criteria) if message.HasField("criteria") else None,
        platforms=tuple(p.strip() for p in message.sync_platforms),
        schedule_kind=_SCHEDULE_IN.get(message.schedule.kind, str(message.schedule.kind)),
        cron=message.schedule.cron,
    )


# ---- domain -> proto ------------------------------------------------------------------------


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def to_value(value: Any) -> struct_pb2.Value:
    holder = struct_pb2.Struct()
    holder.update({"v": value})
    return holder.fields["v"]


def condition_message(condition: Condition) -> pb.Condition:
    document = to_document(condition)
    message = pb.Condition(
        field=condition.path,
        operator=condition.operator.value,
        unit=condition.unit.value if condition.unit else "",
        source=condition.source,
    )
    if "value" in document:
        message.value.CopyFrom(to_value(document["value"]))
    return message


def criteria_message(group: Group) -> pb.Criteria:
    message = pb.Criteria(operator=_LOGIC_OUT[group.logic])
    for child in group.children:
        if isinstance(child, Group):
            message.conditions.add(group=criteria_message(child))
        else:
            message.conditions.add(condition=condition_message(child))
    return message


def status_message(status: PlatformSyncStatus) -> pb.PlatformSyncStatus:
    message = pb.PlatformSyncStatus(
        platform=status.platform,
        last_error=status.last_error,
        consecutive_failures=status.consecutive_failures,
        pending_additions=status.pending_additions,
        pending_removals=status.pending_removals,
        members_on_platform=status.members_on_platform,
    )
    if status.last_success_at is not None:
        message.last_success_at.CopyFrom(timestamp(status.last_success_at))
    if status.last_attempt_at is not None:
        message.last_attempt_at.CopyFrom(timestamp(status.last_attempt_at))
    if status.next_sync_at is not None:
        message.next_sync_at.CopyFrom(timestamp(status.next_sync_at))
    return message


def segment_message(view: SegmentView) -> pb.Segment:
    segment = view.segment
    definition = segment.definition
    return pb.Segment(
        id=segment.id,
        name=definition.name,
        description=definition.description,
        criteria=criteria_message(definition.criteria),
        sync_platforms=list(definition.platforms),
        schedule=pb.SyncSchedule(
            kind=_SCHEDULE_OUT[definition.schedule.kind], cron=definition.schedule.cron
        ),
        created_at=timestamp(segment.created_at),
        updated_at=timestamp(segment.updated_at),
        member_count=view.member_count,
        sync_status=[status_message(s) for s in view.sync_status],
    )


def result_message(result: PlatformResult) -> common_pb2.PlatformSyncResult:
    return common_pb2.PlatformSyncResult(
        platform=result.platform,
        success=result.success,
        error=result.error,
        permanent=result.permanent,
        synced_at=timestamp(result.synced_at),
        records_synced=result.records_synced,
        records_failed=result.records_failed,
    )


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServiceServicer):
    def __init__(self, segments: SegmentService, syncer: SegmentSyncer) -> None:
        self._segments = segments
        self._syncer = syncer

    async def CreateSegment(
        self, request: pb.CreateSegmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CreateSegmentResponse:
        view = await self._segments.create(segment_input(request.segment))
        return pb.CreateSegmentResponse(segment=segment_message(view))

    async def GetSegment(
        self, request: pb.GetSegmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetSegmentResponse:
        view = await self._segments.get(request.segment_id)
        return pb.GetSegmentResponse(segment=segment_message(view))

    async def ListSegments(
        self, request: pb.ListSegmentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSegmentsResponse:
        views = await self._segments.all()
        return pb.ListSegmentsResponse(segments=[segment_message(v) for v in views])

    async def UpdateSegment(
        self, request: pb.UpdateSegmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateSegmentResponse:
        view = await self._segments.update(request.segment.id, segment_input(request.segment))
        return pb.UpdateSegmentResponse(segment=segment_message(view))

    async def DeleteSegment(
        self, request: pb.DeleteSegmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeleteSegmentResponse:
        await self._segments.delete(request.segment_id)
        return pb.DeleteSegmentResponse()

    async def CountMembers(
        self, request: pb.CountMembersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CountMembersResponse:
        return pb.CountMembersResponse(count=await self._segments.count(request.segment_id))

    async def ListMembers(
        self, request: pb.ListMembersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ListMembersResponse]:
        async for page in self._segments.members(request.segment_id, request.limit):
            yield pb.ListMembersResponse(
                members=[
                    pb.SegmentMember(
                        customer_id=member.customer_id, entered_at=timestamp(member.entered_at)
                    )
                    for member in page
                ]
            )

    async def PreviewSegment(
        self, request: pb.PreviewSegmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PreviewSegmentResponse:
        criteria = raw_group(request.criteria) if request.HasField("criteria") else None
        preview = await self._segments.preview(criteria, request.sample_size)
        return pb.PreviewSegmentResponse(
            count=preview.count, sample_customer_ids=list(preview.sample)
        )

    async def SyncSegment(
        self, request: pb.SyncSegmentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SyncSegmentResponse:
        remaining = context.time_remaining()
        # A sync already running may take at most half the caller's time; the rest is left
        # for sending what it did not.
        results = await self._syncer.sync_segment(
            request.segment_id,
            full_resync=request.full_resync,
            deadline=None if remaining is None else time.monotonic() + remaining / 2,
        )
        return pb.SyncSegmentResponse(results=[result_message(r) for r in results])
