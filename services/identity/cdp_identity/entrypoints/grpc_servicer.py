"""The IdentityService gRPC servicer: proto -> command -> resolver -> proto, nothing more."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_errors import DomainError, InvalidArgument
from cdp_grpc.errors import rich_status
from cdp_identity.domain.identifiers import IdentityKind, RawIdentifiers, RawPlatformId
from cdp_identity.domain.model import (
    IdentityMap,
    IdentityStatus,
    MatchMethod,
    Resolution,
    ResolveIdentity,
)
from cdp_identity.service_layer.resolver import IdentityResolver

MAX_BATCH_ITEMS = 10_000

_METHODS = {
    MatchMethod.DETERMINISTIC: identity_pb2.MATCH_METHOD_DETERMINISTIC,
    MatchMethod.PROBABILISTIC: identity_pb2.MATCH_METHOD_PROBABILISTIC,
    MatchMethod.NEW: identity_pb2.MATCH_METHOD_NEW,
}
_STATUSES = {
    IdentityStatus.ACTIVE: identity_pb2.IDENTITY_STATUS_ACTIVE,
    IdentityStatus.ARCHIVED: identity_pb2.IDENTITY_STATUS_ARCHIVED,
    IdentityStatus.MERGED: identity_pb2.IDENTITY_STATUS_MERGED,
}


def raw_identifiers(message: common_pb2.Identifiers) -> RawIdentifiers:
    return RawIdentifiers(
        user_id=message.user_id,
        email=message.email,
        phone=message.phone,
        anonymous_id=message.anonymous_id,
        session_id=message.session_id,
        device_id=message.device_id,
        platform_ids=tuple(RawPlatformId(p.platform, p.id) for p in message.platform_ids),
        cookies=tuple(message.cookies),
    )


def to_command(request: identity_pb2.ResolveIdentityRequest) -> ResolveIdentity:
    return ResolveIdentity(
        identifiers=raw_identifiers(request.identifiers),
        source_platform=request.source_platform.strip().lower(),
        allow_probabilistic=request.allow_probabilistic,
    )


def to_response(resolution: Resolution) -> identity_pb2.ResolveIdentityResponse:
    return identity_pb2.ResolveIdentityResponse(
        customer_id=resolution.customer_id,
        confidence=resolution.confidence,
        method=_METHODS[resolution.method],
        matched_on=list(resolution.matched_on),
        created=resolution.created,
    )


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def to_identity_map(found: IdentityMap) -> identity_pb2.GetIdentityMapResponse:
    response = identity_pb2.GetIdentityMapResponse(
        customer_id=found.customer_id,
        merged_customer_ids=list(found.merged_customer_ids),
        created_at=_timestamp(found.created_at),
        updated_at=_timestamp(found.updated_at),
    )
    for stored in found.identities:
        response.identities.append(
            identity_pb2.IdentityEntry(
                identity_type=stored.key.kind.value,
                platform=stored.key.platform or stored.source_platform,
                value=stored.key.value,
                confidence=stored.confidence,
                last_verified_at=_timestamp(stored.last_verified_at),
                status=_STATUSES[stored.status],
            )
        )
        active = stored.status is IdentityStatus.ACTIVE
        if stored.key.kind is IdentityKind.EMAIL and active and not response.primary_email:
            response.primary_email = stored.key.value
        if stored.key.kind is IdentityKind.PHONE and active and not response.primary_phone:
            response.primary_phone = stored.key.value
        if stored.key.kind is IdentityKind.COOKIE:
            response.cookies.append(stored.key.value)
        if stored.key.kind is IdentityKind.DEVICE_ID:
            response.device_ids.append(stored.key.value)
    return response


def item_error(error: DomainError) -> common_pb2.ItemError:
    code, message, _ = rich_status(error)
    item = common_pb2.ItemError(code=code.value[0], message=message)
    if isinstance(error, InvalidArgument):
        item.field_violations.extend(
            common_pb2.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        )
    return item


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, resolver: IdentityResolver) -> None:
        self._resolver = resolver

    async def ResolveIdentity(
        self,
        request: identity_pb2.ResolveIdentityRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> identity_pb2.ResolveIdentityResponse:
        return to_response(await self._resolver.resolve(to_command(request)))

    async def BatchResolveIdentities(
        self,
        request: identity_pb2.BatchResolveIdentitiesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> identity_pb2.BatchResolveIdentitiesResponse:
        if len(request.items) > MAX_BATCH_ITEMS:
            raise InvalidArgument.single(
                "items", f"has {len(request.items)} entries; the limit is {MAX_BATCH_ITEMS}"
            )
        response = identity_pb2.BatchResolveIdentitiesResponse()
        for index, item in enumerate(request.items):
            try:
                resolution = await self._resolver.resolve(to_command(item))
            except InvalidArgument as error:
                response.results.append(
                    identity_pb2.ResolveIdentityResult(
                        error=item_error(error.under(f"items[{index}]"))
                    )
                )
                continue
            response.results.append(
                identity_pb2.ResolveIdentityResult(resolution=to_response(resolution))
            )
        return response

    async def GetIdentityMap(
        self,
        request: identity_pb2.GetIdentityMapRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> identity_pb2.GetIdentityMapResponse:
        return to_identity_map(await self._resolver.identity_map(request.customer_id))
