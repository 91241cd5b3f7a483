"""Sending membership deltas to platform connectors over the shared Connector contract.

One channel per platform (`cdp_connector_client.ConnectorChannels`), dialled on first use, at
the address `cdp up` (or the operator) gives as CDP_CONNECTOR_<PLATFORM>_ADDR or
CDP_<PLATFORM>_ADDR; a platform without one fails with FailedPrecondition (NO_CONNECTOR).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from cdp.connector.v1 import connector_pb2
from cdp_connector_client import ConnectorChannels
from cdp_errors import Unavailable
from cdp_segmentation.service_layer.ports import MemberFailure, MembershipReply
from cdp_telemetry import redact


class GrpcConnectors:
    def __init__(self, channels: ConnectorChannels) -> None:
        self._channels = channels

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
        stub = self._channels.stub(platform)
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
