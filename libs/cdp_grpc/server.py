"""An aio gRPC server with health, reflection, error mapping, tracing, TLS and token auth."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cdp_grpc.auth import TokenAuthServerInterceptor
from cdp_grpc.channel import MAX_MESSAGE_BYTES
from cdp_grpc.errors import ErrorMappingInterceptor
from cdp_settings import Secret, setting
from cdp_telemetry import Telemetry

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class GrpcServerSettings:
    host: str = setting("CDP_GRPC_HOST", default="127.0.0.1", doc="address to listen on")
    port: int = setting(
        "CDP_GRPC_PORT", default=-1, doc="port to listen on; the service's own default when unset"
    )
    shutdown_grace_seconds: float = setting(
        "CDP_SHUTDOWN_GRACE_SECONDS", default=10.0, doc="how long in-flight calls may finish"
    )
    max_request_seconds: float = setting(
        "CDP_MAX_REQUEST_SECONDS", default=30.0, doc="longest a unary call may run"
    )
    reflection: bool = setting("CDP_GRPC_REFLECTION", default=True, doc="server reflection")
    readiness_interval_seconds: float = setting(
        "CDP_READINESS_INTERVAL_SECONDS", default=5.0, doc="how often dependencies are re-checked"
    )
    tls_cert_file: Path | None = setting("CDP_GRPC_TLS_CERT_FILE", default=None)
    tls_key_file: Path | None = setting("CDP_GRPC_TLS_KEY_FILE", default=None)
    tls_client_ca_file: Path | None = setting(
        "CDP_GRPC_TLS_CLIENT_CA_FILE", default=None, doc="require client certificates (mTLS)"
    )
    service_token: Secret = setting(
        "CDP_SERVICE_TOKEN", default=Secret(""), doc="require this bearer token on every call"
    )


@dataclass(frozen=True)
class ServiceRegistration:
    """One servicer to serve: its generated `add_*_to_server` and its full service name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    full_name: str


class GrpcServer:
    """Owns one `grpc.aio.server`; health goes SERVING only after `mark_serving`.

    Shutdown (`stop`) follows the house order: health to NOT_SERVING first, so balancers
    stop routing new calls, then `server.stop(grace)` lets in-flight calls finish.
    """

    def __init__(
        self,
        settings: GrpcServerSettings,
        registrations: Sequence[ServiceRegistration],
        *,
        telemetry: Telemetry | None = None,
        default_port: int = 0,
        extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self._settings = settings
        self._registrations = list(registrations)
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if telemetry is not None:
            interceptors.append(telemetry.server_interceptor())
        if settings.service_token:
            interceptors.append(TokenAuthServerInterceptor(settings.service_token))
        interceptors.append(
            ErrorMappingInterceptor(max_request_seconds=settings.max_request_seconds)
        )
        interceptors.extend(extra_interceptors)
        self._server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        # grpc-stubs does not describe grpc_health's asyncio servicer.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        for registration in self._registrations:
            registration.add_to_server(registration.servicer, self._server)
        if settings.reflection:
            names = [r.full_name for r in self._registrations]
            names += [
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ]
            reflection.enable_server_reflection(names, self._server)
        port = settings.port if settings.port >= 0 else default_port
        address = f"{settings.host}:{port}"
        if settings.tls_cert_file and settings.tls_key_file:
            credentials = grpc.ssl_server_credentials(
                [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
                root_certificates=(
                    settings.tls_client_ca_file.read_bytes()
                    if settings.tls_client_ca_file
                    else None
                ),
                require_client_auth=settings.tls_client_ca_file is not None,
            )
            self.port = self._server.add_secure_port(address, credentials)
        else:
            self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"could not listen on {address}")
        self.address = f"{settings.host}:{self.port}"
        self._stopped = False

    @property
    def service_names(self) -> list[str]:
        return ["", *(r.full_name for r in self._registrations)]

    async def start(self) -> None:
        for name in self.service_names:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.start()

    async def mark_serving(self, serving: bool = True) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self.service_names:
            await self.health.set(name, status)

    async def stop(self) -> None:
        """NOT_SERVING, then stop accepting calls and let in-flight ones finish. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self._server.stop(self._settings.shutdown_grace_seconds)

    async def watch_readiness(self, check: ReadinessCheck, interval: float) -> None:
        """Keeps health in step with the dependencies: NOT_SERVING while `check` fails."""
        serving = True
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.wait_for(check(), timeout=interval)
                healthy = True
            except Exception as error:  # any failing dependency means not ready
                healthy = False
                if serving:
                    logger.warning("dependency check failed, reporting NOT_SERVING: %s", error)
            if healthy != serving and not self._stopped:
                serving = healthy
                await self.mark_serving(healthy)
                if healthy:
                    logger.info("dependencies reachable again, reporting SERVING")


@contextlib.asynccontextmanager
async def serving(server: GrpcServer, *, readiness: ReadinessCheck | None = None) -> Any:
    """Starts `server`, waits for `readiness`, marks SERVING; stops it on exit."""
    await server.start()
    watcher: asyncio.Task[None] | None = None
    try:
        if readiness is not None:
            await readiness()
            watcher = asyncio.create_task(
                server.watch_readiness(readiness, server._settings.readiness_interval_seconds)
            )
        await server.mark_serving()
        yield server
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await server.stop()
