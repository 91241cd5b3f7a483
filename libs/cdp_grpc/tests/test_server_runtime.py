from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdp_errors import FieldViolation, InvalidArgument, NotFound
from cdp_grpc import (
    GrpcClientSettings,
    GrpcServer,
    GrpcServerSettings,
    ServiceRegistration,
    create_channel,
    field_violations_of,
)
from cdp_settings import Secret
from cdp_telemetry import TelemetrySettings, configure_telemetry
from cdp_testing import wait_until

# A tiny service built from generic handlers; HealthCheckRequest/Response stand in for
# request and response messages so the test needs no generated code of its own.
SERVICE = "cdp.test.v1.ProbeService"
Request = health_pb2.HealthCheckRequest
Response = health_pb2.HealthCheckResponse


class ProbeBehaviour:
    def __init__(self) -> None:
        self.calls = 0

    async def unary(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        self.calls += 1
        what = request.service
        if what == "invalid":
            raise InvalidArgument(
                [FieldViolation("identifiers.email", "is not a valid email address")]
            )
        if what == "missing":
            raise NotFound("customer", "c-404")
        if what == "crash":
            raise RuntimeError("database said Key (value)=(ada@example.com) already exists")
        if what == "slow":
            await asyncio.sleep(5)
        if what == "flaky" and self.calls == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return Response(status=Response.SERVING)

    async def stream(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        yield Response(status=Response.SERVING)
        if request.service == "invalid":
            raise InvalidArgument.single("filter.since", "must be before filter.until")


def probe_registration(behaviour: ProbeBehaviour) -> ServiceRegistration:
    def add(_servicer: Any, server: grpc.aio.Server) -> None:
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(
                behaviour.unary, Request.FromString, Response.SerializeToString
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(
                behaviour.stream, Request.FromString, Response.SerializeToString
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    return ServiceRegistration(add_to_server=add, servicer=behaviour, full_name=SERVICE)


def server_settings(**overrides: Any) -> GrpcServerSettings:
    defaults: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "shutdown_grace_seconds": 1.0}
    defaults.update(overrides)
    return GrpcServerSettings(**defaults)


def unary(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/Unary",
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )


async def start(server: GrpcServer) -> GrpcServer:
    await server.start()
    await server.mark_serving()
    return server


async def test_invalid_argument_carries_field_violations() -> None:
    server = await start(GrpcServer(server_settings(), [probe_registration(ProbeBehaviour())]))
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)(Request(service="invalid"))
    await server.stop()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations_of(caught.value) == [
        ("identifiers.email", "is not a valid email address")
    ]
    assert "identifiers.email" in (caught.value.details() or "")


async def test_not_found_and_unexpected_errors_map_to_their_codes_without_personal_data() -> None:
    server = await start(GrpcServer(server_settings(), [probe_registration(ProbeBehaviour())]))
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await unary(channel)(Request(service="missing"))
        with pytest.raises(grpc.aio.AioRpcError) as crashed:
            await unary(channel)(Request(service="crash"))
    await server.stop()
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "c-404" in (missing.value.details() or "")
    assert crashed.value.code() == grpc.StatusCode.INTERNAL
    assert "example.com" not in (crashed.value.details() or "")
    assert (crashed.value.details() or "").startswith("internal error (trace id")


async def test_a_handler_past_the_request_limit_gets_deadline_exceeded() -> None:
    settings = server_settings(max_request_seconds=0.2)
    server = await start(GrpcServer(settings, [probe_registration(ProbeBehaviour())]))
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(channel)(Request(service="slow"))
    await server.stop()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_streaming_errors_are_mapped_too() -> None:
    server = await start(GrpcServer(server_settings(), [probe_registration(ProbeBehaviour())]))
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        call = channel.unary_stream(
            f"/{SERVICE}/Stream",
            request_serializer=Request.SerializeToString,
            response_deserializer=Response.FromString,
        )(Request(service="invalid"))
        received = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for item in call:
                received.append(item)
    await server.stop()
    assert len(received) == 1
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations_of(caught.value) == [("filter.since", "must be before filter.until")]


async def test_channel_retries_unavailable() -> None:
    behaviour = ProbeBehaviour()
    server = await start(GrpcServer(server_settings(), [probe_registration(behaviour)]))
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        response = await unary(channel)(Request(service="flaky"))
    await server.stop()
    assert response.status == Response.SERVING
    assert behaviour.calls == 2


async def test_health_is_not_serving_until_marked_and_after_stop() -> None:
    server = GrpcServer(server_settings(), [probe_registration(ProbeBehaviour())])
    await server.start()
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        before = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        await server.mark_serving()
        during = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        stopping = asyncio.create_task(server.stop())

        async def not_serving() -> bool:
            after = await server.health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE), None
            )
            return bool(after.status == health_pb2.HealthCheckResponse.NOT_SERVING)

        await wait_until(not_serving, timeout=5, message="NOT_SERVING while stopping")
        await stopping
    assert before.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert during.status == health_pb2.HealthCheckResponse.SERVING
    await server.stop()  # idempotent


async def test_service_token_is_required_except_for_health() -> None:
    token = Secret("s3cret-token")
    server = await start(
        GrpcServer(server_settings(service_token=token), [probe_registration(ProbeBehaviour())])
    )
    async with create_channel(server.address, GrpcClientSettings()) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await unary(anonymous)(Request(service="ok"))
        health = await health_pb2_grpc.HealthStub(anonymous).Check(health_pb2.HealthCheckRequest())
    async with create_channel(
        server.address, GrpcClientSettings(service_token=Secret("wrong"))
    ) as bad:
        with pytest.raises(grpc.aio.AioRpcError) as rejected:
            await unary(bad)(Request(service="ok"))
    async with create_channel(server.address, GrpcClientSettings(service_token=token)) as good:
        response = await unary(good)(Request(service="ok"))
    await server.stop()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert response.status == Response.SERVING


async def test_reflection_lists_the_registered_services() -> None:
    server = await start(GrpcServer(server_settings(), [probe_registration(ProbeBehaviour())]))
    async with create_channel(server.address, GrpcClientSettings()) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def one_request() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names: list[str] = []
        async for response in stub.ServerReflectionInfo(one_request()):
            names.extend(s.name for s in response.list_services_response.service)
    await server.stop()
    assert SERVICE in names and "grpc.health.v1.Health" in names


async def test_client_and_server_spans_share_one_trace() -> None:
    exporter = InMemorySpanExporter()
    telemetry = configure_telemetry("probe", TelemetrySettings(), exporters=[exporter])
    server = await start(
        GrpcServer(server_settings(), [probe_registration(ProbeBehaviour())], telemetry=telemetry)
    )
    async with create_channel(server.address, GrpcClientSettings(), telemetry=telemetry) as channel:
        await unary(channel)(Request(service="ok"))
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    await server.stop()
    spans = exporter.get_finished_spans()
    kinds = {span.kind for span in spans}
    assert kinds == {SpanKind.CLIENT, SpanKind.SERVER}, [s.name for s in spans]
    assert len({span.context.trace_id for span in spans}) == 1
    assert all("Health" not in span.name for span in spans)
