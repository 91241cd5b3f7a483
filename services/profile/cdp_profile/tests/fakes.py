"""Stand-ins for the profile service's collaborators.

In memory (for handler tests without I/O): the unit of work and repository, an identity
port, a connector port. Over real gRPC (for servicer and integration tests): an
IdentityService and ConnectorService servers on port 0, since services never import each
other, and the connector being built elsewhere is reached only through its contract.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import json_format

from cdp.common.v1 import common_pb2
from cdp.connector.v1 import connector_pb2, connector_pb2_grpc
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_errors import DomainError, FieldViolation, InvalidArgument, Unavailable
from cdp_profile.domain.events import ProfileEvent
from cdp_profile.domain.model import FieldState, ProfileHead, StoredFragment
from cdp_profile.domain.profile import ProfileWork
from cdp_profile.service_layer.ports import PlatformRecord, PushOutcome, ResolveRequest


@dataclass
class FakeStore:
    profiles: dict[str, ProfileHead] = field(default_factory=dict)
    fragments: dict[str, StoredFragment] = field(default_factory=dict)
    fields: dict[tuple[str, str], FieldState] = field(default_factory=dict)
    events: list[ProfileEvent] = field(default_factory=list)
    claimed: set[tuple[str, str]] = field(default_factory=set)
    # merge id -> undone?
    merges: dict[str, bool] = field(default_factory=dict)
    sequence: int = 0
    history_reads: int = 0


class FakeProfileRepository:
    def __init__(self, store: FakeStore) -> None:
        self._s = store

    async def lock_profiles(
        self, customer_ids: Collection[str], now: datetime
    ) -> dict[str, ProfileHead]:
        for customer in customer_ids:
            self._s.profiles.setdefault(customer, ProfileHead(customer, 0, {}, now, now))
        return {c: copy.deepcopy(self._s.profiles[c]) for c in customer_ids}

    async def survivors(self, customer_ids: Collection[str]) -> dict[str, str]:
        found = {}
        for customer in customer_ids:
            current = customer
            while (head := self._s.profiles.get(current)) is not None and head.merged_into:
                current = head.merged_into
            if current != customer:
                found[customer] = current
        return found

    async def allocate_fragments(self, count: int) -> list[tuple[int, str]]:
        start = self._s.sequence
        self._s.sequence += count
        return [(seq, str(uuid.uuid4())) for seq in range(start + 1, start + count + 1)]

    async def load_fields(
        self, paths_by_customer: Mapping[str, Collection[str]]
    ) -> dict[str, dict[str, FieldState]]:
        return {
            customer: {
                path: self._s.fields[(customer, path)]
                for path in paths
                if (customer, path) in self._s.fields
            }
            for customer, paths in paths_by_customer.items()
        }

    async def add_fragments(self, fragments: Sequence[StoredFragment]) -> None:
        for fragment in fragments:
            self._s.fragments[fragment.id] = fragment

    async def save(self, works: Sequence[ProfileWork], now: datetime) -> None:
        for work in works:
            if work.replaced:
                for key in [k for k in self._s.fields if k[0] == work.customer_id]:
                    del self._s.fields[key]
            states = work.fields if work.replaced else work.dirty
            for state in states.values():
                self._s.fields[(work.customer_id, state.path)] = state
            if work.changed:
                head = self._s.profiles[work.customer_id]
                head.version = work.version
                head.attributes = copy.deepcopy(work.document)
                head.merged_into = work.head.merged_into
                head.updated_at = now

    async def history(self, customer_id: str) -> list[StoredFragment]:
        self._s.history_reads += 1
        mine = [f for f in self._s.fragments.values() if f.customer_id == customer_id]
        return sorted(mine, key=lambda f: f.seq)

    async def profile(self, customer_id: str) -> tuple[ProfileHead, list[FieldState]] | None:
        head = self._s.profiles.get(customer_id)
        if head is None:
            return None
        states = [s for (c, _), s in self._s.fields.items() if c == customer_id]
        return copy.deepcopy(head), states

    async def move_fragments(self, from_customer: str, to_customer: str) -> int:
        moved = 0
        for key, fragment in list(self._s.fragments.items()):
            if fragment.customer_id == from_customer:
                self._s.fragments[key] = replace(fragment, customer_id=to_customer)
                moved += 1
        return moved

    async def family(self, customer_id: str) -> set[str]:
        members = {customer_id}
        grew = True
        while grew:
            grew = False
            for head in self._s.profiles.values():
                if head.merged_into in members and head.customer_id not in members:
                    members.add(head.customer_id)
                    grew = True
        return members

    async def owners_of_fragments_for(self, customer_ids: Collection[str]) -> set[str]:
        return {f.customer_id for f in self._s.fragments.values() if f.ingested_for in customer_ids}

    async def reclaim_fragments(self, customer_id: str, ingested_for: Collection[str]) -> int:
        moved = 0
        for key, fragment in list(self._s.fragments.items()):
            if fragment.ingested_for in ingested_for and fragment.customer_id != customer_id:
                self._s.fragments[key] = replace(fragment, customer_id=customer_id)
                moved += 1
        # The restored customer's row is saved by its own work.
        return moved

    async def record_merge(self, merge_id: str, survivor: str, merged: str, now: datetime) -> bool:
        undone = self._s.merges.setdefault(merge_id, False)
        return not undone

    async def record_unmerge(
        self, merge_id: str, survivor: str, restored: str, now: datetime
    ) -> None:
        self._s.merges[merge_id] = True

    async def forget(self, customer_ids: Collection[str], now: datetime) -> int:
        doomed = [
            key
            for key, f in self._s.fragments.items()
            if f.customer_id in customer_ids or f.ingested_for in customer_ids
        ]
        for fragment_id in doomed:
            del self._s.fragments[fragment_id]
        for field_key in [k for k in self._s.fields if k[0] in customer_ids]:
            del self._s.fields[field_key]
        for customer in customer_ids:
            head = self._s.profiles[customer]
            head.attributes, head.merged_into, head.forgotten = {}, None, True
        return len(doomed)


class FakeProfileUnitOfWork:
    """Works on a copy of the store; commit puts the copy in place, anything else drops it."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self._work = FakeStore()
        self._pending: list[ProfileEvent] = []
        self.profiles = FakeProfileRepository(self._work)

    async def __aenter__(self) -> FakeProfileUnitOfWork:
        self._work = copy.deepcopy(self._store)
        self._pending = []
        self.profiles = FakeProfileRepository(self._work)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pending = []

    async def commit(self) -> None:
        self._work.events.extend(self._pending)
        for name in vars(self._store):
            setattr(self._store, name, getattr(self._work, name))
        self._work = copy.deepcopy(self._store)
        self._pending = []

    def publish_event(self, event: ProfileEvent) -> None:
        self._pending.append(copy.deepcopy(event))

    async def claim_message(self, consumer: str, message_id: str) -> bool:
        if (consumer, message_id) in self._work.claimed:
            return False
        self._work.claimed.add((consumer, message_id))
        return True


class FakeIdentity:
    """Resolves by email (lower-cased) to a stable customer id; counts calls."""

    def __init__(self) -> None:
        self.customers: dict[str, str] = {}
        self.calls: list[int] = []
        self.down = False

    def customer_for(self, email: str) -> str:
        return self.customers.setdefault(email.strip().lower(), str(uuid.uuid4()))

    async def resolve(self, requests: Sequence[ResolveRequest]) -> list[str | DomainError]:
        if self.down:
            raise Unavailable("the identity service did not resolve the fragments (UNAVAILABLE)")
        self.calls.append(len(requests))
        results: list[str | DomainError] = []
        for request in requests:
            email = request.identifiers.email
            if "@" not in email:
                results.append(
                    InvalidArgument([FieldViolation("identifiers.email", "is not a valid email")])
                )
            else:
                results.append(self.customer_for(email))
        return results


@dataclass
class FakeConnectors:
    behaviour: dict[str, str] = field(default_factory=dict)  # platform -> ok | fail | hang
    pushed: list[tuple[str, PlatformRecord]] = field(default_factory=list)

    def knows(self, platform: str) -> bool:
        return platform in self.behaviour

    async def push(self, platform: str, record: PlatformRecord, *, timeout: float) -> PushOutcome:
        self.pushed.append((platform, record))
        mode = self.behaviour[platform]
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "fail":
            raise Unavailable(f"{platform} connector answered UNAVAILABLE: platform down")
        return PushOutcome(True, records_synced=1)


# --- real gRPC stand-ins ---------------------------------------------------------------


class FakeIdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Deterministic by lower-cased email, user id or phone; invalid emails are item errors."""

    def __init__(self) -> None:
        self.customers: dict[tuple[str, str], str] = {}
        self.batch_calls: list[int] = []
        self.single_calls = 0

    def _resolve(
        self, request: identity_pb2.ResolveIdentityRequest
    ) -> identity_pb2.ResolveIdentityResult:
        ids = request.identifiers
        if ids.email and "@" not in ids.email:
            return identity_pb2.ResolveIdentityResult(
                error=common_pb2.ItemError(
                    code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                    message="identifiers.email: is not a valid email address",
                    field_violations=[
                        common_pb2.FieldViolation(
                            field="items[0].identifiers.email",
                            description="is not a valid email address",
                        )
                    ],
                )
            )
        keys = [
            (kind, value.strip().lower())
            for kind, value in (
                ("email", ids.email),
                ("user_id", ids.user_id),
                ("phone", ids.phone),
            )
            if value
        ]
        found = next((self.customers[k] for k in keys if k in self.customers), None)
        customer = found or str(uuid.uuid4())
        for key in keys:
            self.customers.setdefault(key, customer)
        return identity_pb2.ResolveIdentityResult(
            resolution=identity_pb2.ResolveIdentityResponse(
                customer_id=customer, created=found is None, confidence=1.0
            )
        )

    async def ResolveIdentity(
        self, request: identity_pb2.ResolveIdentityRequest, context: Any
    ) -> identity_pb2.ResolveIdentityResponse:
        self.single_calls += 1
        return self._resolve(request).resolution

    async def BatchResolveIdentities(
        self, request: identity_pb2.BatchResolveIdentitiesRequest, context: Any
    ) -> identity_pb2.BatchResolveIdentitiesResponse:
        self.batch_calls.append(len(request.items))
        return identity_pb2.BatchResolveIdentitiesResponse(
            results=[self._resolve(item) for item in request.items]
        )


class FakeConnectorServicer(connector_pb2_grpc.ConnectorServiceServicer):
    """`ok` accepts every profile, `refuse` answers each record with a permanent failure,
    `fail` aborts with INTERNAL (not UNAVAILABLE, which clients retry), `hang` never answers
    (until its caller gives up)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        # When pushes arrived and when a hung push was given up by its caller (monotonic
        # clock), so that tests can check ordering without timing anything.
        self.push_started: list[float] = []
        self.push_cancelled: list[float] = []
        self.pushed: list[dict[str, Any]] = []
        self.emails: list[str] = []
        self.ensured: list[list[tuple[str, int]]] = []

    async def EnsureFields(
        self, request: connector_pb2.EnsureFieldsRequest, context: Any
    ) -> connector_pb2.EnsureFieldsResponse:
        self.ensured.append([(f.tag, f.type) for f in request.fields])
        return connector_pb2.EnsureFieldsResponse(created=[f.tag for f in request.fields])

    async def PushProfiles(
        self, request: connector_pb2.PushProfilesRequest, context: Any
    ) -> connector_pb2.PushProfilesResponse:
        self.push_started.append(time.monotonic())
        if self.mode == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.push_cancelled.append(time.monotonic())
                raise
        if self.mode == "fail":
            await context.abort(grpc.StatusCode.INTERNAL, "platform answered 500")
        results = []
        for profile in request.profiles:
            self.pushed.append(json_format.MessageToDict(profile.payload))
            self.emails.append(profile.email)
            if self.mode == "refuse":
                results.append(
                    connector_pb2.RecordResult(
                        key=profile.customer_id,
                        success=False,
                        error="Member In Compliance State",
                        permanent=True,
                    )
                )
            else:
                results.append(connector_pb2.RecordResult(key=profile.customer_id, success=True))
        return connector_pb2.PushProfilesResponse(results=results)


@asynccontextmanager
async def grpc_server(register: Any, servicer: Any) -> AsyncIterator[str]:
    """A real grpc.aio server on a free port serving `servicer`; yields its address."""
    server = grpc.aio.server()
    register(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def identity_server(servicer: FakeIdentityServicer) -> Any:
    return grpc_server(identity_pb2_grpc.add_IdentityServiceServicer_to_server, servicer)


def connector_server(servicer: FakeConnectorServicer) -> Any:
    return grpc_server(connector_pb2_grpc.add_ConnectorServiceServicer_to_server, servicer)


# The generated servicer bases declare every RPC abstract; the fakes implement only the ones
# the profile service calls, and the others answer UNIMPLEMENTED like any unknown method.
def fake_identity() -> FakeIdentityServicer:
    return FakeIdentityServicer()  # type: ignore[abstract]


def fake_connector(mode: str) -> FakeConnectorServicer:
    return FakeConnectorServicer(mode)  # type: ignore[abstract]
