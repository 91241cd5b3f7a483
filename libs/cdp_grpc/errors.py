"""The one place where domain errors become gRPC status codes.

`ErrorMappingInterceptor` wraps every RPC handler of a server:

- `InvalidArgument` -> INVALID_ARGUMENT with a `google.rpc.BadRequest` detail listing each
  field violation, readable by any gRPC client (`field_violations_of` on our side);
- `NotFound` -> NOT_FOUND, `AlreadyExists` -> ALREADY_EXISTS,
  `FailedPrecondition` -> FAILED_PRECONDITION (with an `ErrorInfo` reason),
  `Unavailable` -> UNAVAILABLE, `PermissionDenied`, `Unauthenticated`;
- a handler running past its deadline -> DEADLINE_EXCEEDED;
- anything else -> INTERNAL with a generic message carrying the trace id, logged once with
  its stack trace. Bad input never ends up here: handlers validate first.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import trace

from cdp.common.v1 import common_pb2
from cdp_errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from cdp_telemetry.pii import redact

logger = logging.getLogger(__name__)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_ERROR_DOMAIN = "cdp.suite"

_CODES: list[tuple[type[DomainError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
]


def status_code_for(error: DomainError) -> grpc.StatusCode:
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.UNKNOWN


def rich_status(error: DomainError) -> tuple[grpc.StatusCode, str, bytes]:
    """(code, message, serialized google.rpc.Status) for a domain error."""
    code = status_code_for(error)
    message = redact(str(error))
    details: list[any_pb2.Any] = []
    if isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=redact(v.description)
                )
                for v in error.violations
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    elif isinstance(error, FailedPrecondition) and error.reason:
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=_ERROR_DOMAIN))
        details.append(packed)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return code, message, status.SerializeToString()


def item_error(error: DomainError) -> common_pb2.ItemError:
    """The per-item error of a batch response (`cdp.common.v1.ItemError`): the code, message
    and field violations a unary call failing with `error` would have answered."""
    code, message, _ = rich_status(error)
    item = common_pb2.ItemError(code=code.value[0], message=message)
    if isinstance(error, InvalidArgument):
        item.field_violations.extend(
            common_pb2.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        )
    return item


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: DomainError) -> None:
    code, message, details = rich_status(error)
    await context.abort(code, message, trailing_metadata=((_STATUS_DETAILS_KEY, details),))


def _trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else "none"


async def _abort_unexpected(
    context: grpc.aio.ServicerContext[Any, Any], method: str, error: BaseException
) -> None:
    trace_id = _trace_id()
    logger.error("unexpected error in %s", method, exc_info=error, extra={"rpc_method": method})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (trace id {trace_id})")


async def _abort_deadline(context: grpc.aio.ServicerContext[Any, Any], seconds: float) -> None:
    await context.abort(
        grpc.StatusCode.DEADLINE_EXCEEDED, f"request did not complete within {seconds:g} s"
    )


def _budget(context: grpc.aio.ServicerContext[Any, Any], max_seconds: float) -> float:
    remaining = context.time_remaining()
    return max_seconds if remaining is None else min(max_seconds, max(remaining, 0.0))


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to status codes and bounds how long a handler may run.

    Args:
        max_request_seconds: the longest a unary handler may run when the caller set no
            shorter deadline. Streaming handlers are not bounded (a stream may be long), but
            the caller's own deadline still applies to them.
    """

    def __init__(self, *, max_request_seconds: float = 30.0) -> None:
        self._max_request_seconds = max_request_seconds

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream(handler.stream_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        max_seconds = self._max_request_seconds

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            budget = _budget(context, max_seconds)
            try:
                async with asyncio.timeout(budget):
                    return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except DomainError as error:
                await abort_with(context, error)
            except TimeoutError:
                await _abort_deadline(context, budget)
            except Exception as error:  # the last line of defence: log once, answer INTERNAL
                await _abort_unexpected(context, method, error)

        return wrapped

    def _wrap_stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            # A coroutine handler that streams through `context.write` (the health service's
            # Watch does): same mapping as unary, without the time bound.
            return self._wrap_writer(behavior, method)

        async def wrapped(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except DomainError as error:
                await abort_with(context, error)
            except Exception as error:
                await _abort_unexpected(context, method, error)

        return wrapped

    def _wrap_writer(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except DomainError as error:
                await abort_with(context, error)
            except Exception as error:
                await _abort_unexpected(context, method, error)

        return wrapped


def field_violations_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> list[tuple[str, str]]:
    """(field, description) pairs from an INVALID_ARGUMENT error's BadRequest detail."""
    trailing: Any = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == _STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            violations: list[tuple[str, str]] = []
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad_request = error_details_pb2.BadRequest()
                    detail.Unpack(bad_request)
                    violations.extend(
                        (v.field, v.description) for v in bad_request.field_violations
                    )
            return violations
    return []
