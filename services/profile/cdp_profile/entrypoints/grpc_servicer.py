"""The ProfileService gRPC servicer: proto -> command -> handler -> proto, nothing more."""

from __future__ import annotations

from typing import Any

import grpc

from cdp.common.v1 import common_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_errors import DomainError, InvalidArgument
from cdp_grpc.errors import item_error
from cdp_grpc.structs import struct_to_dict, to_struct
from cdp_profile.adapters.messages import timestamp
from cdp_profile.domain.model import Identifiers, IngestFragment, IngestResult, UnifiedProfile
from cdp_profile.service_layer.ingestion import FragmentIngestor
from cdp_profile.service_layer.queries import ProfileQueries
from cdp_profile.service_layer.sync import PlatformSyncOutcome, ProfileSyncer


def to_identifiers(message: common_pb2.Identifiers) -> Identifiers:
    return Identifiers(
        user_id=message.user_id,
        email=message.email,
        phone=message.phone,
        anonymous_id=message.anonymous_id,
        session_id=message.session_id,
        device_id=message.device_id,
        platform_ids=tuple((p.platform, p.id) for p in message.platform_ids),
        cookies=tuple(message.cookies),
    )


NO_IDENTIFIERS = Identifiers()


def to_command(fragment: profile_pb2.ProfileFragment, *, max_bytes: int) -> IngestFragment:
    size = fragment.attributes.ByteSize()
    # An oversized document is refused on its size alone, before it is converted.
    attributes = struct_to_dict(fragment.attributes) if size <= max_bytes else {}
    observed = fragment.observed_at
    identifiers = fragment.identifiers
    return IngestFragment(
        source=fragment.source,
        customer_id=fragment.customer_id,
        # Fragments that carry a customer id usually carry no identifiers.
        identifiers=to_identifiers(identifiers) if identifiers.ByteSize() else NO_IDENTIFIERS,
        attributes=attributes,
        observed_at=(observed.seconds, observed.nanos)
        if fragment.HasField("observed_at")
        else None,
        attributes_size=size,
    )


def to_response(result: IngestResult) -> profile_pb2.IngestProfileFragmentResponse:
    return profile_pb2.IngestProfileFragmentResponse(
        customer_id=result.customer_id,
        fragment_id=result.fragment_id,
        changed_fields=list(result.changed_fields),
        profile_version=result.profile_version,
    )


def to_profile(profile: UnifiedProfile) -> profile_pb2.UnifiedProfile:
    message = profile_pb2.UnifiedProfile(
        customer_id=profile.customer_id,
        attributes=to_struct(profile.attributes),
        version=profile.version,
        updated_at=timestamp(profile.updated_at),
    )
    for state in profile.fields:
        message.provenance[state.path].CopyFrom(
            profile_pb2.FieldProvenance(
                source=state.source,
                observed_at=timestamp(state.observed_at),
                strategy=state.strategy_name,
                contributing_sources=list(state.contributing_sources),
                reason=state.reason,
            )
        )
    return message


def to_sync_result(outcome: PlatformSyncOutcome) -> common_pb2.PlatformSyncResult:
    return common_pb2.PlatformSyncResult(
        platform=outcome.platform,
        success=outcome.success,
        error=outcome.error,
        permanent=outcome.permanent,
        synced_at=timestamp(outcome.synced_at),
        records_synced=outcome.records_synced,
        records_failed=outcome.records_failed,
    )


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(
        self,
        ingestor: FragmentIngestor,
        queries: ProfileQueries,
        syncer: ProfileSyncer,
        *,
        max_attributes_bytes: int,
    ) -> None:
        self._ingestor = ingestor
        self._queries = queries
        self._syncer = syncer
        self._max_bytes = max_attributes_bytes

    async def IngestProfileFragment(
        self,
        request: profile_pb2.IngestProfileFragmentRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> profile_pb2.IngestProfileFragmentResponse:
        if not request.HasField("fragment"):
            raise InvalidArgument.single("fragment", "is required")
        command = to_command(request.fragment, max_bytes=self._max_bytes)
        return to_response(await self._ingestor.ingest_one(command))

    async def IngestProfileFragments(
        self,
        request: profile_pb2.IngestProfileFragmentsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> profile_pb2.IngestProfileFragmentsResponse:
        # Refused on its length before any fragment is converted.
        self._ingestor.check_batch_size(len(request.fragments))
        commands = [to_command(f, max_bytes=self._max_bytes) for f in request.fragments]
        outcomes = await self._ingestor.ingest_many(commands)
        response = profile_pb2.IngestProfileFragmentsResponse()
        results = response.results
        for outcome in outcomes:
            if isinstance(outcome, DomainError):
                results.add(error=item_error(outcome))
            else:
                ingested = results.add().ingested
                ingested.customer_id = outcome.customer_id
                ingested.fragment_id = outcome.fragment_id
                ingested.changed_fields.extend(outcome.changed_fields)
                ingested.profile_version = outcome.profile_version
        return response

    async def GetUnifiedProfile(
        self,
        request: profile_pb2.GetUnifiedProfileRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> profile_pb2.GetUnifiedProfileResponse:
        profile = await self._queries.unified_profile(request.customer_id)
        return profile_pb2.GetUnifiedProfileResponse(profile=to_profile(profile))

    async def SyncProfile(
        self,
        request: profile_pb2.SyncProfileRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> profile_pb2.SyncProfileResponse:
        outcomes = await self._syncer.sync(
            request.customer_id, request.source, list(request.targets)
        )
        return profile_pb2.SyncProfileResponse(results=[to_sync_result(o) for o in outcomes])
