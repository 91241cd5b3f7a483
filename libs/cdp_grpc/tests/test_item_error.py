from __future__ import annotations

import grpc

from cdp_errors import FieldViolation, InvalidArgument, Unavailable
from cdp_grpc.errors import item_error


def test_an_invalid_item_carries_its_code_and_every_field_violation() -> None:
    item = item_error(
        InvalidArgument(
            [
                FieldViolation("items[3].identifiers.email", "is not a valid email address"),
                FieldViolation("items[3].source", "must be one of the known platforms"),
            ]
        )
    )
    assert item.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [(v.field, v.description) for v in item.field_violations] == [
        ("items[3].identifiers.email", "is not a valid email address"),
        ("items[3].source", "must be one of the known platforms"),
    ]


def test_other_errors_carry_their_code_and_a_message_without_personal_data() -> None:
    item = item_error(Unavailable("identity refused ada@example.com: UNAVAILABLE"))
    assert item.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert "ada@example.com" not in item.message
    assert item.message.startswith("identity refused ")
    assert not item.field_violations
