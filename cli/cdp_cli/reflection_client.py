"""Calling any RPC of a running service by name, through server reflection (like grpcurl).

No generated stubs: the service describes its own messages, so this works for every
service of the suite, and for any gRPC server with reflection on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


class ReflectionClient:
    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self._database = ProtoReflectionDescriptorDatabase(channel)
        self._pool = descriptor_pool.DescriptorPool(self._database)

    def services(self) -> list[str]:
        return sorted(self._database.get_services())

    def call(self, method: str, request_json: str, *, timeout: float = 30.0) -> Iterator[str]:
        """Calls `package.Service/Method` with a JSON request; yields JSON responses.

        Unary RPCs yield one response, server-streaming ones each streamed message.
        """
        service_name, _, method_name = method.replace("/", ".").rpartition(".")
        if not service_name:
            raise ValueError(f"method {method!r} must look like package.Service/Method")
        service = self._pool.FindServiceByName(service_name)
        descriptor = service.FindMethodByName(method_name)
        if descriptor is None:
            known = ", ".join(m.name for m in service.methods)
            raise ValueError(f"{service_name} has no method {method_name}; it has {known}")
        request_class: Any = GetMessageClass(descriptor.input_type)
        response_class: Any = GetMessageClass(descriptor.output_type)
        request = json_format.Parse(request_json or "{}", request_class())
        path = f"/{service.full_name}/{descriptor.name}"
        if descriptor.client_streaming:
            raise ValueError(f"{path} takes a request stream, which `cdp call` does not send")
        if descriptor.server_streaming:
            stream = self._channel.unary_stream(
                path,
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )(request, timeout=timeout)
            for response in stream:
                yield json_format.MessageToJson(response, indent=None)
            return
        response = self._channel.unary_unary(
            path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )(request, timeout=timeout)
        yield json_format.MessageToJson(response, indent=2)
