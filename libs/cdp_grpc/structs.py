"""google.protobuf.Struct to and from plain Python, on the hot paths of every service.

`json_format.MessageToDict` / `ParseDict` walk descriptors and JSON names in Python; these
read and build the Struct directly and are several times faster for the small documents
(profiles, event properties) that every batch carries.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

# Doubles hold integers exactly up to 2**53; past that a number stays a float.
_EXACT_INTEGER_LIMIT = 2**53


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python; whole numbers come back as ints."""
    # The map's `items()` is the generic Mapping one, a Python generator over the same
    # lookups: keys are read and indexed directly instead.
    fields = struct.fields
    return {key: value_to_python(fields[key]) for key in fields}


def value_to_python(value: struct_pb2.Value) -> Any:
    """One Struct value as plain Python (None for null or unset)."""
    # Ordered by how often each kind appears in profile and event documents.
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < _EXACT_INTEGER_LIMIT else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    return None


def to_struct(document: dict[str, Any]) -> struct_pb2.Struct:
    """A plain document as a Struct (converted natively by `Struct.update`)."""
    message = struct_pb2.Struct()
    message.update(document)
    return message


def to_value(value: Any) -> struct_pb2.Value:
    """One plain value as a Struct value."""
    holder = struct_pb2.Struct()
    holder.update({"v": value})
    return holder.fields["v"]
