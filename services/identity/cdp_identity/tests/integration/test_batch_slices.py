"""A batch is validated and looked up a slice at a time, each slice's lookup overlapping the
next slice's validation. Slicing must change no result: the same awkward batch goes to a
service that slices every item apart and to one that looks the whole batch up at once, each
over its own empty database, and the answers must match item for item."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import replace

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_db import DatabaseSettings
from cdp_embedded import create_database
from cdp_embedded.postgres import drop_database
from cdp_grpc import GrpcClientSettings, create_channel
from cdp_identity.bootstrap import serve
from cdp_identity.service_layer import resolver
from cdp_identity.settings import IdentitySettings
from cdp_telemetry import Telemetry
from cdp_testing.services import OnServing, service_running

from .conftest import request

ADA = identity_pb2.PersonAttributes(given_name="Ada", family_name="Lovelace")

SEED = [
    request(email="known-a@example.com"),
    request(email="known-b@example.com", phone="+14155550100"),
]

AWKWARD_BATCH = [
    request(email=" New-1@Example.com "),
    request(email="new-1@example.com"),  # the same person as item 0 once normalised
    request(email="broken"),
    request(email="known-a@example.com"),
    request(email="test@test.com"),  # nothing but a blocked placeholder
    request(email="new-2@example.com", user_id="null"),  # the blocked user id is dropped
    request(email="known-a@example.com", phone="+14155550100"),  # two customers: a merge
    request(email="known-a@example.com", device_id="device-new"),  # partly known
    request(email="new-5@example.com", source="myspace"),  # unknown source platform
    request(email="new-1@example.com", device_id="device-1"),  # joins items 0 and 1
    request(email="new-3@example.com", attributes=ADA),  # attributes: one at a time
    request(phone="(415) 555-2671"),
    request(phone="+1 415 555 2671"),  # the same phone as item 11
    request(email="known-b@example.com"),
    request(user_id="u-1", email="new-4@example.com"),
    request(user_id="u-2", email="new-4@example.com"),  # two user ids for one email
    request(email="known-a@example.com"),
    request(email="a" * 300 + "@example.com"),
]

FIND_OWNERS_MARK = "WITH ORDINALITY"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Labels:
    """Customer ids replaced by the order they first appear in: two databases give the same
    people different random ids."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        return _UUID.sub(lambda found: self.names.setdefault(
            found.group(), f"customer-{len(self.names)}"), text)


def comparable(
    labels: Labels, result: identity_pb2.ResolveIdentityResult
) -> tuple[object, ...]:
    if result.HasField("error"):
        error = result.error
        return ("error", error.code, labels(error.message),
                tuple((v.field, v.description) for v in error.field_violations))
    resolution = result.resolution
    merge = resolution.merge
    return ("resolution", labels(resolution.customer_id), resolution.method,
            resolution.confidence, tuple(resolution.matched_on), resolution.created,
            resolution.HasField("merge"), len(merge.merge_ids),
            tuple(labels(c) for c in merge.merged_customer_ids), merge.refused,
            labels(merge.refusal_reason))


async def resolved_in_slices(
    settings: IdentitySettings, telemetry: Telemetry, admin_url: str,
    monkeypatch: pytest.MonkeyPatch, *, slices: int, min_slice: int,
) -> list[tuple[object, ...]]:
    monkeypatch.setattr(resolver, "LOOKUP_SLICES", slices)
    monkeypatch.setattr(resolver, "MIN_LOOKUP_SLICE", min_slice)
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = await create_database(admin_url, name, exist_ok=False)
    own = replace(settings, database=DatabaseSettings(url=url))

    async def start(stop: asyncio.Event, on_serving: OnServing) -> None:
        await serve(own, stop=stop, telemetry=telemetry, on_serving=on_serving)

    try:
        async with service_running(start) as server:
            channel = create_channel(server.address, GrpcClientSettings())
            try:
                stub = identity_pb2_grpc.IdentityServiceStub(channel)
                labels = Labels()
                for seed in SEED:
                    labels((await stub.ResolveIdentity(seed)).customer_id)
                response = await stub.BatchResolveIdentities(
                    identity_pb2.BatchResolveIdentitiesRequest(items=AWKWARD_BATCH))
                return [comparable(labels, result) for result in response.results]
            finally:
                await channel.close(None)
    finally:
        await drop_database(admin_url, name)


async def test_slicing_a_batch_changes_no_result(
    identity_settings: IdentitySettings, telemetry: Telemetry,
    span_exporter: InMemorySpanExporter, postgres_admin_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = await resolved_in_slices(identity_settings, telemetry, postgres_admin_url,
                                     monkeypatch, slices=1, min_slice=10_000)
    span_exporter.clear()
    item_by_item = await resolved_in_slices(identity_settings, telemetry, postgres_admin_url,
                                            monkeypatch, slices=10_000, min_slice=1)
    lookups = [s for s in span_exporter.get_finished_spans()
               if FIND_OWNERS_MARK in str((s.attributes or {}).get("db.statement", ""))]
    # The sliced service really looked up item by item (the valid plain items, and the
    # one-at-a-time ones after them), so the comparison below compares two different paths.
    assert len(lookups) >= 12
    assert item_by_item == whole
    kinds = [entry[0] for entry in whole]
    assert [i for i, kind in enumerate(kinds) if kind == "error"] == [2, 4, 8, 17]
    assert whole[1][1] == whole[0][1]  # normalisation joined items 0 and 1
    assert whole[12][1] == whole[11][1]
