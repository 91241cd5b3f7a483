"""The profile-updated event as the bus carries it, against protobuf's own conversions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp.profile.v1 import profile_events_pb2
from cdp_grpc.structs import to_struct, to_value
from cdp_profile.adapters.messages import (
    _updated,
    document_struct,
    new_message_id,
    timestamp,
    to_outbox,
)
from cdp_profile.domain.events import ProfileUpdated
from cdp_profile.domain.model import FieldChange

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
    ),
    max_leaves=12,
)
_documents = st.dictionaries(st.text(max_size=5), _values, max_size=4)


def reference(event: ProfileUpdated) -> profile_events_pb2.ProfileUpdated:
    """The event built with protobuf's generic helpers, as the service used to."""
    body = profile_events_pb2.ProfileUpdated(
        customer_id=event.customer_id,
        version=event.version,
        attributes=to_struct(event.attributes),
        occurred_at=timestamp(event.occurred_at),
    )
    for change in event.changes:
        item = body.changes.add(path=change.path, source=change.source)
        if change.old_value is not None:
            item.old_value.CopyFrom(to_value(change.old_value))
        if change.new_value is not None:
            item.new_value.CopyFrom(to_value(change.new_value))
    return body


@settings(max_examples=150, deadline=None)
@given(document=_documents)
def test_a_document_becomes_the_struct_protobuf_would_build(document: dict[str, Any]) -> None:
    assert document_struct(document) == to_struct(document)


@settings(max_examples=150, deadline=None)
@given(
    document=_documents,
    changes=st.lists(st.tuples(st.text(max_size=6), _values, _values), max_size=4),
    micros=st.integers(0, 10**6 - 1),
)
def test_a_profile_update_carries_what_protobuf_would_build(
    document: dict[str, Any], changes: list[tuple[str, Any, Any]], micros: int
) -> None:
    event = ProfileUpdated(
        customer_id=str(uuid.uuid4()),
        version=7,
        changes=tuple(FieldChange(path, old, new, "crm") for path, old, new in changes),
        attributes=document,
        occurred_at=datetime(2026, 12, 4, 12, 30, 15, micros, tzinfo=UTC),
    )
    built = _updated(event)
    assert built == reference(event)
    assert built.HasField("attributes")


def test_an_update_serialises_the_document_as_it_was_when_published() -> None:
    document: dict[str, Any] = {"user": {"firstName": "Ada"}}
    event = ProfileUpdated(
        "5d459211-6c7b-4c8e-a8dc-63d515e47204",
        1,
        (FieldChange("user.firstName", None, "Ada", "crm"),),
        document,
        datetime(2026, 12, 4, tzinfo=UTC),
    )
    message = to_outbox(event)
    document["user"]["firstName"] = "Grace"
    body = profile_events_pb2.ProfileUpdated.FromString(message.event.data)
    assert body.attributes.fields["user"].struct_value.fields["firstName"].string_value == "Ada"
    assert message.event.subject == event.customer_id
    assert message.event.data_schema == "cdp.profile.v1.ProfileUpdated"


def test_message_ids_are_distinct_random_uuids() -> None:
    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
