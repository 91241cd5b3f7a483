"""One lazily dialled channel per platform's connector, behind the shared Connector contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc

from cdp.connector.v1 import connector_pb2_grpc
from cdp_connector_client.addresses import connector_variable
from cdp_errors import FailedPrecondition
from cdp_grpc import GrpcClientSettings, create_channel
from cdp_telemetry import Telemetry

if TYPE_CHECKING:
    from cdp.connector.v1.connector_pb2_grpc import ConnectorServiceAsyncStub


class ConnectorChannels:
    """Stubs for each platform's ConnectorService at `addresses` (platform -> host:port).

    A platform's channel is created on its first call, so a service starts and serves while
    a connector is still starting or down; `close` closes every channel opened.
    """

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

    def knows(self, platform: str) -> bool:
        """Whether a connector address is configured for `platform`."""
        return platform in self._addresses

    def stub(self, platform: str) -> ConnectorServiceAsyncStub:
        """The platform's stub; FailedPrecondition (NO_CONNECTOR) when none is configured."""
        address = self._addresses.get(platform)
        if address is None:
            raise FailedPrecondition(
                f"no connector is configured for {platform} (set {connector_variable(platform)})",
                reason="NO_CONNECTOR",
            )
        channel = self._channels.get(platform)
        if channel is None:
            channel = create_channel(address, self._settings, telemetry=self._telemetry)
            self._channels[platform] = channel
        return connector_pb2_grpc.ConnectorServiceStub(channel)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(grace=None)
