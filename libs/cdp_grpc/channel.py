"""Client channels between services: retries on UNAVAILABLE, default deadlines, TLS, token."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from cdp_settings import Secret, setting
from cdp_telemetry import Telemetry

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class GrpcClientSettings:
    default_timeout_seconds: float = setting(
        "CDP_GRPC_CLIENT_TIMEOUT_SECONDS",
        default=10.0,
        doc="deadline given to calls that set none",
    )
    tls_ca_file: Path | None = setting(
        "CDP_GRPC_TLS_CA_FILE", default=None, doc="CA bundle; TLS to peers when set"
    )
    tls_cert_file: Path | None = setting(
        "CDP_GRPC_TLS_CLIENT_CERT_FILE", default=None, doc="client certificate for mutual TLS"
    )
    tls_key_file: Path | None = setting("CDP_GRPC_TLS_CLIENT_KEY_FILE", default=None)
    service_token: Secret = setting(
        "CDP_SERVICE_TOKEN", default=Secret(""), doc="shared token sent to peers when set"
    )


def _retry_service_config(max_attempts: int) -> str:
    # gRPC's own transparent retry: only UNAVAILABLE (the call never reached a handler, or the
    # server was restarting), so a retried call cannot apply a write twice.
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{}],
                    "retryPolicy": {
                        "maxAttempts": max_attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


class _CallDefaultsInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Adds a deadline to calls without one and the service token to every call."""

    def __init__(self, default_timeout: float, token: Secret) -> None:
        self._default_timeout = default_timeout
        self._auth: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token.reveal()}"),) if token else ()
        )

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(tuple(details.metadata or ()) + self._auth))
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else self._default_timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def create_channel(
    target: str,
    settings: GrpcClientSettings,
    *,
    telemetry: Telemetry | None = None,
    max_attempts: int = 4,
    extra_interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """An aio channel to another service of the suite.

    Calls get the default deadline when they set none, are retried by gRPC on UNAVAILABLE
    with exponential backoff, carry the service token when one is configured, and are traced
    when `telemetry` is given (the trace context travels in the call's metadata).
    """
    options: list[tuple[str, Any]] = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", _retry_service_config(max_attempts)),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    # grpc-stubs types aio interceptors only partially; the four kinds mix in one list.
    interceptors: list[Any] = []
    if telemetry is not None:
        interceptors.extend(telemetry.client_interceptors())
    interceptors.append(
        _CallDefaultsInterceptor(settings.default_timeout_seconds, settings.service_token)
    )
    interceptors.extend(extra_interceptors)
    if settings.tls_ca_file is not None:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=settings.tls_ca_file.read_bytes(),
            private_key=settings.tls_key_file.read_bytes() if settings.tls_key_file else None,
            certificate_chain=(
                settings.tls_cert_file.read_bytes() if settings.tls_cert_file else None
            ),
        )
        return grpc.aio.secure_channel(
            target, credentials, options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
