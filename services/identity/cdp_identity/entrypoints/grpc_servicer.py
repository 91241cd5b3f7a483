"""The IdentityService gRPC servicer: proto -> command -> resolver -> proto, nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_errors import DomainError, InvalidArgument
from cdp_grpc.errors import item_error
from cdp_identity.domain.identifiers import IdentityKind
from cdp_identity.domain.matching import NO_ATTRIBUTES, PersonAttributes
from cdp_identity.domain.model import (
    IdentityMap,
    IdentityStatus,
    MatchMethod,
    MergeRecord,
    Resolution,
    ResolveIdentity,
)
from cdp_identity.service_layer.resolver import IdentityResolver

MAX_BATCH_ITEMS = 10_000

Context = grpc.aio.ServicerContext[Any, Any]

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


def to_command(request: identity_pb2.ResolveIdentityRequest) -> ResolveIdentity:
    if not request.HasField("attributes"):
        # The message already has the fields normalisation reads: no copy per item.
        return ResolveIdentity(
            identifiers=request.identifiers,
            attributes=NO_ATTRIBUTES,
            source_platform=request.source_platform.strip().lower(),
            allow_probabilistic=request.allow_probabilistic,
        )
    attributes = request.attributes
    return ResolveIdentity(
        identifiers=request.identifiers,
        attributes=PersonAttributes(
            given_name=attributes.given_name,
            family_name=attributes.family_name,
            birth_date=attributes.birth_date,
            street_address=attributes.street_address,
            locality=attributes.locality,
            postcode=attributes.postcode,
            region=attributes.region,
        ),
        source_platform=request.source_platform.strip().lower(),
        allow_probabilistic=request.allow_probabilistic,
    )


def fill_response(
    response: identity_pb2.ResolveIdentityResponse, resolution: Resolution
) -> identity_pb2.ResolveIdentityResponse:
    """Writes `resolution` into `response` in place: a batch fills the messages its
    response already holds rather than building each one and copying it in."""
    response.customer_id = resolution.customer_id
    response.confidence = resolution.confidence
    response.method = _METHODS[resolution.method]  # a dict keyed by member: no descriptor reads
    if resolution.matched_on:
        response.matched_on.extend(resolution.matched_on)
    if resolution.created:
        response.created = True
    merge = resolution.merge
    if merge.merge_ids or merge.refused:
        outcome = response.merge
        outcome.merge_ids.extend(merge.merge_ids)
        outcome.merged_customer_ids.extend(merge.merged_customer_ids)
        outcome.refused = merge.refused
        outcome.refusal_reason = merge.refusal_reason
    return response


def to_response(resolution: Resolution) -> identity_pb2.ResolveIdentityResponse:
    return fill_response(identity_pb2.ResolveIdentityResponse(), resolution)


def to_batch_response(
    results: Sequence[Resolution | DomainError],
) -> identity_pb2.BatchResolveIdentitiesResponse:
    response = identity_pb2.BatchResolveIdentitiesResponse()
    add = response.results.add
    for result in results:
        if isinstance(result, Resolution):
            fill_response(add().resolution, result)
        else:
            add(error=item_error(result))
    return response


def _timestamp(value: datetime) -> Timestamp:
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
    # Primary: the first-recorded active one, else the first at all.
    for kind, target in ((IdentityKind.EMAIL, "primary_email"), (IdentityKind.PHONE,
                                                                   "primary_phone")):
        of_kind = [s for s in found.identities if s.key.kind is kind]
        active = [s for s in of_kind if s.status is IdentityStatus.ACTIVE]
        chosen = (active or of_kind)[:1]
        if chosen:
            setattr(response, target, chosen[0].key.value)
    response.cookies.extend(s.key.value for s in found.identities
                            if s.key.kind is IdentityKind.COOKIE)
    response.device_ids.extend(s.key.value for s in found.identities
                               if s.key.kind is IdentityKind.DEVICE_ID)
    return response


def to_merge_record(record: MergeRecord) -> identity_pb2.MergeRecord:
    message = identity_pb2.MergeRecord(
        merge_id=record.merge_id,
        survivor_customer_id=record.survivor_customer_id,
        merged_customer_id=record.merged_customer_id,
        reason=record.reason,
        matched_on=list(record.matched_on),
        merged_at=_timestamp(record.merged_at),
    )
    if record.unmerged_at is not None:
        message.unmerged_at.CopyFrom(_timestamp(record.unmerged_at))
    return message


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, resolver: IdentityResolver) -> None:
        self._resolver = resolver

    async def ResolveIdentity(
        self, request: identity_pb2.ResolveIdentityRequest, context: Context
    ) -> identity_pb2.ResolveIdentityResponse:
        return to_response(await self._resolver.resolve(to_command(request)))

    async def BatchResolveIdentities(
        self, request: identity_pb2.BatchResolveIdentitiesRequest, context: Context
    ) -> identity_pb2.BatchResolveIdentitiesResponse:
        if len(request.items) > MAX_BATCH_ITEMS:
            raise InvalidArgument.single(
                "items", f"has {len(request.items)} entries; the limit is {MAX_BATCH_ITEMS}"
            )
        results = await self._resolver.resolve_batch([to_command(i) for i in request.items])
        return to_batch_response(results)

    async def GetIdentityMap(
        self, request: identity_pb2.GetIdentityMapRequest, context: Context
    ) -> identity_pb2.GetIdentityMapResponse:
        return to_identity_map(await self._resolver.identity_map(request.customer_id))

    async def MergeCustomers(
        self, request: identity_pb2.MergeCustomersRequest, context: Context
    ) -> identity_pb2.MergeCustomersResponse:
        record = await self._resolver.merge(
            request.customer_id, request.other_customer_id, request.reason
        )
        return identity_pb2.MergeCustomersResponse(
            survivor_customer_id=record.survivor_customer_id,
            merged_customer_id=record.merged_customer_id,
            merge_id=record.merge_id,
        )

    async def UnmergeCustomers(
        self, request: identity_pb2.UnmergeCustomersRequest, context: Context
    ) -> identity_pb2.UnmergeCustomersResponse:
        record = await self._resolver.unmerge(request.merge_id)
        return identity_pb2.UnmergeCustomersResponse(
            survivor_customer_id=record.survivor_customer_id,
            restored_customer_id=record.merged_customer_id,
        )

    async def ForgetCustomer(
        self, request: identity_pb2.ForgetCustomerRequest, context: Context
    ) -> identity_pb2.ForgetCustomerResponse:
        forgotten = await self._resolver.forget(request.customer_id)
        return identity_pb2.ForgetCustomerResponse(
            customer_id=forgotten.customer_id,
            identities_deleted=forgotten.identities_deleted,
            forgotten_customer_ids=list(forgotten.forgotten_customer_ids),
        )

    async def ListMerges(
        self, request: identity_pb2.ListMergesRequest, context: Context
    ) -> identity_pb2.ListMergesResponse:
        records = await self._resolver.list_merges(request.customer_id)
        return identity_pb2.ListMergesResponse(merges=[to_merge_record(r) for r in records])
