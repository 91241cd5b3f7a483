"""Sending membership deltas to platform connectors over the shared Connector contract.

One channel per platform, dialled on first use, at the address `cdp up` (or the operator)
gives as CDP_CONNECTOR_<PLATFORM>_ADDR or CDP_<PLATFORM>_ADDR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import grpc

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp_errors import FailedPrecondition, Unavailable
from cdp_grpc import GrpcClientSettings, create_channel
from cdp_segmentation.service_layer.ports import MemberFailure, MembershipReply
from cdp_telemetry import Telemetry, redact

if TYPE_CHECKING:
    from cdp.connector.v1.connector_pb2_grpc import ConnectorServiceAsyncStub


class GrpcConnectors:
    def __init__(
        self,
        addresses: Mapping[str, str],
        settings: GrpcClientSettings,
        *,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._addresses = dict(addresses)
        self._settings = settings
        self._telemetry = telemetry
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, platform: str) -> ConnectorServiceAsyncStub:
        address = self._addresses.get(platform)
        if address is None:
            variable = f"CDP_CONNECTOR_{platform.upper().replace('-', '_')}_ADDR"
            raise FailedPrecondition(
                f"no connector is configured for {platform} (set {variable})",
                reason="NO_CONNECTOR",
            )
        channel = self._channels.get(platform)
        if channel is None:
            channel = create_channel(address, self._settings, telemetry=self._telemetry)
            self._channels[platform] = channel
        return connector_pb2_grpc.ConnectorServiceStub(channel)

    async def sync_membership(
        self,
        platform: str,
        *,
        segment_id: str,
        segment_name: str,
        add: Sequence[tuple[str, str]],
        remove: Sequence[tuple[str, str]],
        full_resync: bool,
        timeout: float,
    ) -> MembershipReply:
        stub = self._stub(platform)
        request = connector_pb2.SyncSegmentMembershipRequest(
            segment_id=segment_id,
            segment_name=segment_name,
            members_to_add=[
                connector_pb2.SegmentMember(customer_id=customer, email=email)
                for customer, email in add
            ],
            members_to_remove=[
                connector_pb2.SegmentMember(customer_id=customer, email=email)
                for customer, email in remove
            ],
            full_resync=full_resync,
        )
        try:
            response = await stub.SyncSegmentMembership(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(
                f"{platform} connector answered {error.code().name}: "
                f"{redact(error.details() or '')[:300]}"
            ) from None
        return MembershipReply(
            platform_segment_id=response.platform_segment_id,
            added=response.members_added,
            removed=response.members_removed,
            failures=tuple(
                MemberFailure(f.key, redact(f.error)[:300], f.permanent)
                for f in response.failures
            ),
        )

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(grace=None)
