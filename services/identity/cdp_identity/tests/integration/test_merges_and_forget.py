from __future__ import annotations

import hashlib

import grpc
import pytest

from cdp.identity.v1 import identity_events_pb2, identity_pb2
from cdp_bus.subjects import IDENTITY_FORGOTTEN, IDENTITY_MERGED, IDENTITY_UNMERGED
from cdp_embedded import EmbeddedNats

from .conftest import RunningIdentity, bus_messages, request


async def new_customer(
    identity: RunningIdentity, *, email: str = "", phone: str = "", user_id: str = "",
    device_id: str = "",
) -> str:
    response = await identity.stub.ResolveIdentity(
        request(email=email, phone=phone, user_id=user_id, device_id=device_id))
    assert response.created
    return response.customer_id


async def identity_values(identity: RunningIdentity, customer_id: str) -> dict[str, int]:
    found = await identity.stub.GetIdentityMap(
        identity_pb2.GetIdentityMapRequest(customer_id=customer_id))
    return {e.value: e.status for e in found.identities}


async def test_identifiers_pointing_at_two_customers_merge_them_and_announce_it(
    identity: RunningIdentity, nats: EmbeddedNats
) -> None:
    by_email = await new_customer(identity, email="ada@example.com")
    by_phone = await new_customer(identity, phone="+14155552671")
    both = await identity.stub.ResolveIdentity(
        request(email="ada@example.com", phone="+14155552671", device_id="laptop-1"))
    assert both.customer_id == by_email  # the older customer survives
    assert list(both.merge.merged_customer_ids) == [by_phone]
    assert not both.merge.refused
    survivor_map = await identity.stub.GetIdentityMap(
        identity_pb2.GetIdentityMapRequest(customer_id=by_email))
    statuses = {e.value: e.status for e in survivor_map.identities}
    assert statuses == {
        "ada@example.com": identity_pb2.IDENTITY_STATUS_ACTIVE,
        "+14155552671": identity_pb2.IDENTITY_STATUS_MERGED,
        "laptop-1": identity_pb2.IDENTITY_STATUS_ACTIVE,
    }
    assert list(survivor_map.merged_customer_ids) == [by_phone]
    via_merged_id = await identity.stub.GetIdentityMap(
        identity_pb2.GetIdentityMapRequest(customer_id=by_phone))
    assert via_merged_id.customer_id == by_email
    (message,) = await bus_messages(identity.nats_url, IDENTITY_MERGED, 1)
    event = identity_events_pb2.CustomersMerged.FromString(message.data)
    assert (event.survivor_customer_id, event.merged_customer_id) == (by_email, by_phone)
    assert event.merge_id == both.merge.merge_ids[0]
    assert set(event.matched_on) == {"email", "phone"}


async def test_customers_with_different_user_ids_are_reported_not_merged(
    identity: RunningIdentity,
) -> None:
    first = await new_customer(identity, user_id="crm-1", email="shared@example.com")
    second = await new_customer(identity, user_id="crm-2", phone="+14155552671")
    response = await identity.stub.ResolveIdentity(
        request(email="shared@example.com", phone="+14155552671"))
    assert response.customer_id == first
    assert response.merge.refused
    assert second in response.merge.refusal_reason
    assert "different user ids" in response.merge.refusal_reason
    assert "+14155552671" in await identity_values(identity, second)


async def test_an_explicit_merge_past_protection_fails_with_the_reason(
    identity: RunningIdentity,
) -> None:
    first = await new_customer(identity, user_id="crm-1")
    second = await new_customer(identity, user_id="crm-2")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await identity.stub.MergeCustomers(identity_pb2.MergeCustomersRequest(
            customer_id=first, other_customer_id=second))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "different user ids" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as same:
        await identity.stub.MergeCustomers(identity_pb2.MergeCustomersRequest(
            customer_id=first, other_customer_id=first))
    assert same.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unmerge_restores_both_customers_and_their_identities(
    identity: RunningIdentity,
) -> None:
    ada = await new_customer(identity, email="ada@example.com")
    phone_owner = await new_customer(identity, phone="+14155552671", device_id="tablet-7")
    merged = await identity.stub.MergeCustomers(identity_pb2.MergeCustomersRequest(
        customer_id=phone_owner, other_customer_id=ada, reason="support ticket 42"))
    assert merged.survivor_customer_id == ada
    assert (await identity.stub.ResolveIdentity(request(phone="+14155552671"))).customer_id == ada
    undone = await identity.stub.UnmergeCustomers(
        identity_pb2.UnmergeCustomersRequest(merge_id=merged.merge_id))
    assert (undone.survivor_customer_id, undone.restored_customer_id) == (ada, phone_owner)
    assert await identity_values(identity, phone_owner) == {
        "+14155552671": identity_pb2.IDENTITY_STATUS_ACTIVE,
        "tablet-7": identity_pb2.IDENTITY_STATUS_ACTIVE,
    }
    assert list(await identity_values(identity, ada)) == ["ada@example.com"]
    by_phone = await identity.stub.ResolveIdentity(request(phone="+14155552671"))
    assert by_phone.customer_id == phone_owner
    log = await identity.stub.ListMerges(identity_pb2.ListMergesRequest(customer_id=ada))
    assert log.merges[0].reason == "support ticket 42" and log.merges[0].HasField("unmerged_at")
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await identity.stub.UnmergeCustomers(
            identity_pb2.UnmergeCustomersRequest(merge_id=merged.merge_id))
    assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    (message,) = await bus_messages(identity.nats_url, IDENTITY_UNMERGED, 1)
    event = identity_events_pb2.CustomersUnmerged.FromString(message.data)
    assert event.restored_customer_id == phone_owner


async def test_undoing_an_inner_merge_takes_the_identities_back_from_a_later_survivor(
    identity: RunningIdentity,
) -> None:
    oldest = await new_customer(identity, email="z@example.com")
    middle = await new_customer(identity, email="a@example.com")
    youngest = await new_customer(identity, email="b@example.com")
    inner = await identity.stub.MergeCustomers(identity_pb2.MergeCustomersRequest(
        customer_id=middle, other_customer_id=youngest))
    outer = await identity.stub.MergeCustomers(identity_pb2.MergeCustomersRequest(
        customer_id=oldest, other_customer_id=middle))
    assert (outer.survivor_customer_id, inner.survivor_customer_id) == (oldest, middle)
    await identity.stub.UnmergeCustomers(identity_pb2.UnmergeCustomersRequest(
        merge_id=inner.merge_id))
    assert list(await identity_values(identity, youngest)) == ["b@example.com"]
    await identity.stub.UnmergeCustomers(identity_pb2.UnmergeCustomersRequest(
        merge_id=outer.merge_id))
    assert list(await identity_values(identity, middle)) == ["a@example.com"]
    assert list(await identity_values(identity, oldest)) == ["z@example.com"]


async def test_forget_erases_the_person_and_refuses_to_recreate_them(
    identity: RunningIdentity,
) -> None:
    ada = await new_customer(identity, email="Ada@Example.com", phone="+14155552671")
    alias = await new_customer(identity, device_id="phone-9")
    await identity.stub.MergeCustomers(identity_pb2.MergeCustomersRequest(
        customer_id=ada, other_customer_id=alias))
    forgotten = await identity.stub.ForgetCustomer(
        identity_pb2.ForgetCustomerRequest(customer_id=alias))  # a merged id: the whole person
    assert forgotten.customer_id == ada
    assert forgotten.identities_deleted == 3
    assert list(forgotten.forgotten_customer_ids) == [alias]
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await identity.stub.GetIdentityMap(identity_pb2.GetIdentityMapRequest(customer_id=ada))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await identity.stub.ResolveIdentity(request(email="ada@example.com"))
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "forgotten" in (late.value.details() or "")
    assert "ada@example.com" not in (late.value.details() or "")
    fresh = await identity.stub.ResolveIdentity(request(email="someone.else@example.com"))
    assert fresh.created
    (message,) = await bus_messages(identity.nats_url, IDENTITY_FORGOTTEN, 1)
    event = identity_events_pb2.CustomerForgotten.FromString(message.data)
    assert event.customer_id == ada and list(event.merged_customer_ids) == [alias]
    assert list(event.email_md5_hashes) == [hashlib.md5(b"ada@example.com").hexdigest()]
    again = await identity.stub.ForgetCustomer(identity_pb2.ForgetCustomerRequest(customer_id=ada))
    assert again.identities_deleted == 0
