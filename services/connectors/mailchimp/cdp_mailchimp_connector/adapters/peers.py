"""The event router, the profile and identity services, reached over their gRPC contracts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from cdp.common.v1 import common_pb2
from cdp.events.v1 import events_pb2, events_pb2_grpc
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_errors import Unavailable
from cdp_mailchimp_connector.domain.inbound import SOURCE, Fragment, UnifiedEvent

# Item errors that another attempt may cure; any other refusal is final.
_TRANSIENT_CODES = {
    grpc.StatusCode.UNAVAILABLE.value[0],
    grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
    grpc.StatusCode.ABORTED.value[0],
}


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _struct(values: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(values)
    return struct


def _identifiers(email: str, subscriber_hash: str) -> common_pb2.Identifiers:
    identifiers = common_pb2.Identifiers(email=email)
    if subscriber_hash:
        identifiers.platform_ids.append(
            common_pb2.PlatformId(platform=SOURCE, id=subscriber_hash)
        )
    return identifiers


def event_proto(event: UnifiedEvent) -> events_pb2.Event:
    return events_pb2.Event(
        id=event.id,
        type=event.type,
        source=SOURCE,
        timestamp=_timestamp(event.timestamp),
        identifiers=_identifiers(event.email, event.subscriber_hash),
        properties=_struct(event.properties),
    )


def fragment_proto(fragment: Fragment) -> profile_pb2.ProfileFragment:
    return profile_pb2.ProfileFragment(
        source=SOURCE,
        identifiers=_identifiers(fragment.email, fragment.subscriber_hash),
        attributes=_struct(fragment.attributes),
        observed_at=_timestamp(fragment.observed_at),
    )


class GrpcEventRouter:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = events_pb2_grpc.EventRouterServiceStub(channel)
        self._timeout = timeout

    async def publish(self, events: Sequence[UnifiedEvent]) -> list[bool]:
        response = await self._stub.PublishEvents(
            events_pb2.PublishEventsRequest(events=[event_proto(e) for e in events]),
            timeout=self._timeout,
        )
        if len(response.results) != len(events):
            raise RuntimeError("the event router answered a different number of results")
        return [
            not (result.HasField("error") and result.error.code in _TRANSIENT_CODES)
            for result in response.results
        ]


class GrpcProfileSink:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = profile_pb2_grpc.ProfileServiceStub(channel)
        self._timeout = timeout

    async def ingest(self, fragments: Sequence[Fragment]) -> list[bool]:
        response = await self._stub.IngestProfileFragments(
            profile_pb2.IngestProfileFragmentsRequest(
                fragments=[fragment_proto(f) for f in fragments]
            ),
            timeout=self._timeout,
        )
        if len(response.results) != len(fragments):
            raise RuntimeError("the profile service answered a different number of results")
        return [
            not (result.HasField("error") and result.error.code in _TRANSIENT_CODES)
            for result in response.results
        ]


class GrpcCustomerDirectory:
    """A customer's primary email, from the identity service's identity map."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 10.0) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self._timeout = timeout

    async def primary_email(self, customer_id: str) -> str:
        try:
            response = await self._stub.GetIdentityMap(
                identity_pb2.GetIdentityMapRequest(customer_id=customer_id),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return ""
            raise Unavailable(
                f"identity service: {error.code().name}: {error.details()}"
            ) from None
        return str(response.primary_email)
