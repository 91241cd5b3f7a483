"""The router's calls to other services: identity (batch resolve) and profile (fragments)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unavailable,
)
from cdp_event_router.domain.model import EventIdentifiers

MAX_IDENTITY_BATCH = 10_000
_INVALID, _PRECONDITION = grpc.StatusCode.INVALID_ARGUMENT.value[0], \
    grpc.StatusCode.FAILED_PRECONDITION.value[0]


def _item_error(error: common_pb2.ItemError) -> DomainError:
    if error.code == _INVALID and error.field_violations:
        return InvalidArgument([FieldViolation(v.field, v.description)
                                for v in error.field_violations])
    if error.code == _PRECONDITION:
        return FailedPrecondition(error.message)
    return Unavailable(error.message)


def _unavailable(service: str, error: grpc.aio.AioRpcError) -> Unavailable:
    return Unavailable(f"{service} service unavailable: {error.code().name}")


class IdentityClient:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self._timeout = timeout

    async def resolve(
        self, items: Sequence[tuple[EventIdentifiers, str]]
    ) -> list[str | DomainError]:
        """The customer id for each (identifiers, source), or why it cannot be resolved."""
        results: list[str | DomainError] = []
        for start in range(0, len(items), MAX_IDENTITY_BATCH):
            chunk = items[start:start + MAX_IDENTITY_BATCH]
            request = identity_pb2.BatchResolveIdentitiesRequest(items=[
                identity_pb2.ResolveIdentityRequest(
                    identifiers=common_pb2.Identifiers(
                        user_id=ids.user_id, email=ids.email, phone=ids.phone,
                        anonymous_id=ids.anonymous_id, session_id=ids.session_id,
                        device_id=ids.device_id, cookies=ids.cookies,
                        platform_ids=[common_pb2.PlatformId(platform=p, id=i)
                                      for p, i in ids.platform_ids],
                    ),
                    source_platform=source,
                )
                for ids, source in chunk
            ])
            try:
                response = await self._stub.BatchResolveIdentities(request,
                                                                    timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                raise _unavailable("identity", error) from None
            for result in response.results:
                if result.HasField("resolution"):
                    results.append(result.resolution.customer_id)
                else:
                    results.append(_item_error(result.error))
        return results


@dataclass(frozen=True)
class Fragment:
    customer_id: str
    source: str
    attributes: dict[str, Any]
    observed_at: datetime


class ProfileClient:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = profile_pb2_grpc.ProfileServiceStub(channel)
        self._timeout = timeout

    async def ingest(self, fragments: Sequence[Fragment]) -> list[str]:
        """Sends the fragments; returns an error message per fragment the profile refused
        for good (invalid), and raises Unavailable when it should be tried again."""
        request = profile_pb2.IngestProfileFragmentsRequest()
        for fragment in fragments:
            stamp = Timestamp()
            stamp.FromDatetime(fragment.observed_at)
            message = request.fragments.add(
                source=fragment.source, customer_id=fragment.customer_id, observed_at=stamp
            )
            message.attributes.update(fragment.attributes)
        try:
            response = await self._stub.IngestProfileFragments(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                return [error.details() or "invalid"] * len(fragments)
            raise _unavailable("profile", error) from None
        refused: list[str] = []
        for result in response.results:
            if result.HasField("error"):
                if result.error.code != _INVALID:
                    raise Unavailable(f"profile could not store a fragment: "
                                      f"{result.error.message}")
                refused.append(result.error.message)
        return refused
