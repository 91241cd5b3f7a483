from __future__ import annotations

from google.protobuf import json_format

from cdp_grpc.structs import struct_to_dict, to_struct, to_value, value_to_python


def test_a_document_survives_the_round_trip_with_whole_numbers_as_ints() -> None:
    document = {
        "user": {"firstName": "Ada", "tags": ["vip", "beta"], "age": 36, "score": 0.5},
        "active": True,
        "deleted_at": None,
        "big": 2.0**60,
    }
    back = struct_to_dict(to_struct(document))
    assert back == document
    assert isinstance(back["user"]["age"], int)
    assert isinstance(back["big"], float)


def test_it_reads_what_json_format_reads() -> None:
    message = json_format.ParseDict({"a": [1, {"b": "c"}], "d": 1.25}, to_struct({}))
    assert struct_to_dict(message) == {"a": [1, {"b": "c"}], "d": 1.25}


def test_single_values_convert_both_ways() -> None:
    assert value_to_python(to_value([1, "x", None])) == [1, "x", None]
    assert value_to_python(to_value({"k": False})) == {"k": False}
