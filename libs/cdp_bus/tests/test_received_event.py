from __future__ import annotations

import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto

from cdp_bus import CloudEvent, PoisonMessage, ReceivedEvent
from cdp_bus.envelope import JSON, PROTOBUF

SUBJECT = "cdp.test.noted"


def received(data: bytes, content_type: str = PROTOBUF) -> ReceivedEvent:
    event = CloudEvent(id="e-1", type=SUBJECT, source="/test", data=data, content_type=content_type)
    return ReceivedEvent(SUBJECT, event, delivery_attempt=1)


def test_a_protobuf_body_decodes_as_its_message() -> None:
    body = FileDescriptorProto(name="a.proto", package="cdp.a").SerializeToString()
    decoded = received(body).decode(FileDescriptorProto)
    assert (decoded.name, decoded.package) == ("a.proto", "cdp.a")


def test_a_json_body_decodes_and_ignores_fields_it_does_not_know() -> None:
    body = b'{"name": "a.proto", "addedLater": true}'
    decoded = received(body, f"{JSON}; charset=utf-8").decode(FileDescriptorProto)
    assert decoded.name == "a.proto"


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b"\xff\xff\xff", PROTOBUF), (b"{not json", JSON), (b'{"name": "\xff"}', JSON)],
)
def test_an_unreadable_body_is_a_poison_message_naming_subject_and_type(
    data: bytes, content_type: str
) -> None:
    with pytest.raises(PoisonMessage) as raised:
        received(data, content_type).decode(FileDescriptorProto)
    assert str(raised.value).startswith(
        f"{SUBJECT} body is not a google.protobuf.FileDescriptorProto:"
    )
