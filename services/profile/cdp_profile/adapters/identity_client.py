"""Resolving fragments' identifiers through the identity service's gRPC API.

Every call is one BatchResolveIdentities, whatever the number of fragments: a batch of a
thousand fragments costs one round trip to identity, not a thousand. The identity
service's field paths (`items[3].identifiers.email`) come back relative to the fragment
(`identifiers.email`); the ingestor puts them under `fragments[i]`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import grpc

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)
from cdp_grpc import field_violations_of
from cdp_profile.domain.model import Identifiers
from cdp_profile.service_layer.ports import ResolveRequest

_ITEM_PREFIX = re.compile(r"^items\[\d+\]\.?")
# Identity's own batch limit; our batches are smaller, but chunking keeps us correct if not.
MAX_ITEMS_PER_CALL = 10_000


def _relative(field: str) -> str:
    field = _ITEM_PREFIX.sub("", field)
    return "source" if field == "source_platform" else field


def to_identifiers(identifiers: Identifiers) -> common_pb2.Identifiers:
    return common_pb2.Identifiers(
        user_id=identifiers.user_id,
        email=identifiers.email,
        phone=identifiers.phone,
        anonymous_id=identifiers.anonymous_id,
        session_id=identifiers.session_id,
        device_id=identifiers.device_id,
        platform_ids=[
            common_pb2.PlatformId(platform=platform, id=value)
            for platform, value in identifiers.platform_ids
        ],
        cookies=list(identifiers.cookies),
    )


def _item_error(error: common_pb2.ItemError) -> DomainError:
    if error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]:
        violations = [
            FieldViolation(_relative(v.field), v.description) for v in error.field_violations
        ]
        return InvalidArgument(violations or [FieldViolation("identifiers", error.message)])
    if error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]:
        return FailedPrecondition(f"identity refused: {error.message}")
    return Unavailable(f"identity could not resolve the fragment: {error.message}")


class GrpcIdentityClient:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self._timeout = timeout

    async def resolve(self, requests: Sequence[ResolveRequest]) -> list[str | DomainError]:
        results: list[str | DomainError] = []
        for start in range(0, len(requests), MAX_ITEMS_PER_CALL):
            results.extend(await self._call(requests[start : start + MAX_ITEMS_PER_CALL]))
        return results

    async def _call(self, requests: Sequence[ResolveRequest]) -> list[str | DomainError]:
        batch = identity_pb2.BatchResolveIdentitiesRequest(
            items=[
                identity_pb2.ResolveIdentityRequest(
                    identifiers=to_identifiers(request.identifiers),
                    source_platform=request.source,
                )
                for request in requests
            ]
        )
        try:
            response = await self._stub.BatchResolveIdentities(batch, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                violations = [
                    FieldViolation(_relative(field), description)
                    for field, description in field_violations_of(error)
                ]
                if violations:
                    return [InvalidArgument(violations) for _ in requests]
            raise Unavailable(
                f"the identity service did not resolve the fragments ({error.code().name}); "
                "fragments that carry a customer_id do not need it"
            ) from None
        if len(response.results) != len(requests):
            raise Unavailable(
                f"the identity service answered {len(response.results)} results for "
                f"{len(requests)} items"
            )
        return [
            result.resolution.customer_id
            if result.HasField("resolution")
            else _item_error(result.error)
            for result in response.results
        ]
