"""Stand-ins for the identity and profile services: real gRPC servers on port 0 that speak
their contracts, with switches to fail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_grpc.structs import struct_to_dict

Context = grpc.aio.ServicerContext[Any, Any]


def customer_for(identifiers: Any) -> str:
    """One stable customer per first identifier: enough to see resolution happened."""
    key = (identifiers.user_id or identifiers.email or identifiers.anonymous_id
           or identifiers.device_id or identifiers.phone)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-identity:{key}"))


# The generated servicers declare every RPC abstract; a fake serves only what the router calls
# (the others answer UNIMPLEMENTED, from the generated base).
@dataclass
class FakeIdentity(identity_pb2_grpc.IdentityServiceServicer):
    batch_calls: list[int] = field(default_factory=list)
    seen: list[Any] = field(default_factory=list)
    down: bool = False

    async def BatchResolveIdentities(self, request: Any, context: Context) -> Any:
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "identity is down")
        self.batch_calls.append(len(request.items))
        response = identity_pb2.BatchResolveIdentitiesResponse()
        for item in request.items:
            self.seen.append(item.identifiers)
            response.results.add(resolution=identity_pb2.ResolveIdentityResponse(
                customer_id=customer_for(item.identifiers), confidence=1.0,
                method=identity_pb2.MATCH_METHOD_DETERMINISTIC))
        return response


@dataclass
class FakeProfile(profile_pb2_grpc.ProfileServiceServicer):
    fragments: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False

    async def IngestProfileFragments(self, request: Any, context: Context) -> Any:
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "profile is down")
        response = profile_pb2.IngestProfileFragmentsResponse()
        for fragment in request.fragments:
            self.fragments.append({
                "customer_id": fragment.customer_id,
                "source": fragment.source,
                "attributes": struct_to_dict(fragment.attributes),
                "observed_at": fragment.observed_at.ToDatetime(),
            })
            response.results.add(ingested=profile_pb2.IngestProfileFragmentResponse(
                customer_id=fragment.customer_id))
        return response
