"""Talking to platform connectors over the shared Connector contract.

One channel per connector, created on first use (`cdp_connector_client.ConnectorChannels`).
Before the first push to a platform whose records need fields to exist (Mailchimp merge
fields), EnsureFields creates them; once that has succeeded the process does not ask again
for the same fields. A connector that does not
implement EnsureFields has nothing to create.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc

from cdp.connector.v1 import connector_pb2
from cdp_connector_client import ConnectorChannels
from cdp_errors import Unavailable
from cdp_grpc.structs import to_struct
from cdp_mappings import FieldType
from cdp_profile.service_layer.ports import PlatformRecord, PushOutcome
from cdp_telemetry import redact

if TYPE_CHECKING:
    from cdp.connector.v1.connector_pb2_grpc import ConnectorServiceAsyncStub

_FIELD_TYPES = {
    FieldType.TEXT: connector_pb2.FIELD_TYPE_TEXT,
    FieldType.NUMBER: connector_pb2.FIELD_TYPE_NUMBER,
    FieldType.DATE: connector_pb2.FIELD_TYPE_DATE,
    FieldType.BOOLEAN: connector_pb2.FIELD_TYPE_BOOLEAN,
    FieldType.PHONE: connector_pb2.FIELD_TYPE_PHONE,
    FieldType.ADDRESS: connector_pb2.FIELD_TYPE_ADDRESS,
}


class GrpcConnectorGateway:
    def __init__(self, channels: ConnectorChannels) -> None:
        self._channels = channels
        self._ensured: dict[str, set[str]] = {}
        self._ensure_locks: dict[str, asyncio.Lock] = {}

    def knows(self, platform: str) -> bool:
        return self._channels.knows(platform)

    async def push(self, platform: str, record: PlatformRecord, *, timeout: float) -> PushOutcome:
        deadline = time.monotonic() + timeout
        stub = self._channels.stub(platform)
        try:
            await self._ensure_fields(stub, platform, record, deadline)
            response = await stub.PushProfiles(
                connector_pb2.PushProfilesRequest(
                    profiles=[
                        connector_pb2.PlatformProfile(
                            customer_id=record.customer_id,
                            email=record.email,
                            payload=to_struct(record.payload),
                        )
                    ]
                ),
                timeout=max(deadline - time.monotonic(), 0.001),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TimeoutError from None
            raise Unavailable(
                f"{platform} connector answered {error.code().name}: "
                f"{redact(error.details() or '')[:300]}"
            ) from None
        mine = [r for r in response.results if r.key == record.customer_id] or list(
            response.results
        )
        if not mine:
            return PushOutcome(
                False, "the connector returned no result for the record", False, 0, 1
            )
        result = mine[0]
        return PushOutcome(
            success=result.success,
            error=result.error,
            permanent=result.permanent,
            records_synced=1 if result.success else 0,
            records_failed=0 if result.success else 1,
        )

    async def _ensure_fields(
        self,
        stub: ConnectorServiceAsyncStub,
        platform: str,
        record: PlatformRecord,
        deadline: float,
    ) -> None:
        ensured = self._ensured.setdefault(platform, set())
        if {field.tag for field in record.fields} <= ensured:
            return
        lock = self._ensure_locks.setdefault(platform, asyncio.Lock())
        async with lock:
            missing = [field for field in record.fields if field.tag not in ensured]
            if not missing:
                return
            try:
                await stub.EnsureFields(
                    connector_pb2.EnsureFieldsRequest(
                        fields=[
                            connector_pb2.FieldDefinition(
                                tag=field.tag, name=field.label, type=_FIELD_TYPES[field.field_type]
                            )
                            for field in missing
                        ]
                    ),
                    timeout=max(deadline - time.monotonic(), 0.001),
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
            ensured.update(field.tag for field in missing)
