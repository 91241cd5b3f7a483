"""ConnectorChannels against real gRPC servers on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp_connector_client import ConnectorChannels
from cdp_embedded.nats import free_port
from cdp_errors import FailedPrecondition
from cdp_grpc import GrpcClientSettings


class HealthOnlyConnector(connector_pb2_grpc.ConnectorServiceServicer):
    """Answers GetConnectorHealth with its platform's name; every other RPC is UNIMPLEMENTED."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.calls = 0

    async def GetConnectorHealth(
        self, request: connector_pb2.GetConnectorHealthRequest, context: Any
    ) -> connector_pb2.GetConnectorHealthResponse:
        self.calls += 1
        return connector_pb2.GetConnectorHealthResponse(platform=self.platform)


@asynccontextmanager
async def connector(platform: str, port: int = 0) -> AsyncIterator[tuple[HealthOnlyConnector, str]]:
    servicer = HealthOnlyConnector(platform)  # type: ignore[abstract]
    server = grpc.aio.server()
    connector_pb2_grpc.add_ConnectorServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{bound}"
    finally:
        await server.stop(grace=None)


async def health_of(channels: ConnectorChannels, platform: str) -> str:
    response = await channels.stub(platform).GetConnectorHealth(
        connector_pb2.GetConnectorHealthRequest(), timeout=5
    )
    return response.platform


async def test_each_platform_is_called_at_its_own_connector() -> None:
    async with connector("mailchimp") as (mailchimp, first), connector("crm") as (crm, second):
        channels = ConnectorChannels({"mailchimp": first, "crm": second}, GrpcClientSettings())
        try:
            assert await health_of(channels, "mailchimp") == "mailchimp"
            assert await health_of(channels, "crm") == "crm"
            assert await health_of(channels, "crm") == "crm"
        finally:
            await channels.close()
    assert (mailchimp.calls, crm.calls) == (1, 2)


async def test_a_channel_is_dialled_on_first_call_so_its_connector_may_start_later() -> None:
    port = free_port()
    channels = ConnectorChannels(
        {"mailchimp": f"127.0.0.1:{port}"}, GrpcClientSettings(default_timeout_seconds=5)
    )
    try:
        assert channels.knows("mailchimp")  # configured, not yet dialled
        async with connector("mailchimp", port) as (servicer, _):
            assert await health_of(channels, "mailchimp") == "mailchimp"
        assert servicer.calls == 1
    finally:
        await channels.close()


async def test_a_platform_without_a_connector_fails_naming_the_variable_to_set() -> None:
    channels = ConnectorChannels({}, GrpcClientSettings())
    assert not channels.knows("shopify")
    with pytest.raises(FailedPrecondition, match="CDP_CONNECTOR_SHOPIFY_ADDR") as raised:
        channels.stub("shopify")
    assert raised.value.reason == "NO_CONNECTOR"


async def test_close_closes_every_channel_opened() -> None:
    async with connector("mailchimp") as (_, address):
        channels = ConnectorChannels({"mailchimp": address}, GrpcClientSettings())
        stub = channels.stub("mailchimp")
        await channels.close()
        with pytest.raises((grpc.aio.UsageError, grpc.aio.AioRpcError)):
            await stub.GetConnectorHealth(connector_pb2.GetConnectorHealthRequest(), timeout=5)
