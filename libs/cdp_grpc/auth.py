"""A shared-token check between services (on in deployment, off on the embedded default).

The caller sends `authorization: Bearer <token>`; the server compares it in constant time.
The health service stays open so that load balancers and Kubernetes probes, which send no
metadata, can still ask whether a server is serving.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cdp_settings import Secret

_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def _deny(message: str) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(deny)


class TokenAuthServerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: Secret) -> None:
        if not token:
            raise ValueError("TokenAuthServerInterceptor needs a non-empty token")
        self._expected = f"Bearer {token.reveal()}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method.startswith(_EXEMPT_PREFIXES):
            return await continuation(handler_call_details)
        presented = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else value
        if not presented:
            return _deny("missing authorization metadata (Bearer token)")
        if not hmac.compare_digest(presented, self._expected):
            return _deny("invalid service token")
        return await continuation(handler_call_details)
