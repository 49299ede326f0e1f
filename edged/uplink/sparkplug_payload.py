"""The Sparkplug B payload (Sparkplug 3.0, chapter 6), as Protobuf message classes.

The schema is described here in Python and built into classes when the module
is imported (``descriptor_pb2`` + ``message_factory``), in a descriptor pool of
its own. It holds the messages and fields an edge node reads and writes:
``Payload`` with its ``Metric``s, their ``PropertySet``s, ``MetaData``,
``DataSet`` and ``Template`` values. The extension points of the
specification are left out: what a peer sends there is kept as unknown
fields and ignored.

Use ``Payload()`` and ``Payload.FromString(data)``; a metric is
``Payload.Metric``.
"""

from __future__ import annotations

import enum
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
PACKAGE = "edged.sparkplug_b"


class DataType(enum.IntEnum):
    """The ``datatype`` of a metric, property or data set column."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19
    PROPERTY_SET = 20
    PROPERTY_SET_LIST = 21


# Field: (name, number, type, repeated, oneof). A type not in _TYPES names a message.
Field = tuple[str, int, str, bool, str | None]
_SCALARS: list[Field] = [
    ("int_value", 0, "uint32", False, "value"),
    ("long_value", 1, "uint64", False, "value"),
    ("float_value", 2, "float", False, "value"),
    ("double_value", 3, "double", False, "value"),
    ("boolean_value", 4, "bool", False, "value"),
    ("string_value", 5, "string", False, "value"),
]


def _values(first: int) -> list[Field]:
    """The scalar members of a ``value`` oneof, numbered from ``first``."""
    return [(name, first + offset, kind, repeated, oneof) for name, offset, kind, repeated, oneof in _SCALARS]


# Message path (nested under Payload) -> its fields.
_MESSAGES: dict[str, list[Field]] = {
    "Payload": [
        ("timestamp", 1, "uint64", False, None),
        ("metrics", 2, "Payload.Metric", True, None),
        ("seq", 3, "uint64", False, None),
        ("uuid", 4, "string", False, None),
        ("body", 5, "bytes", False, None),
    ],
    "Payload.Template": [
        ("version", 1, "string", False, None),
        ("metrics", 2, "Payload.Metric", True, None),
        ("parameters", 3, "Payload.Template.Parameter", True, None),
        ("template_ref", 4, "string", False, None),
        ("is_definition", 5, "bool", False, None),
    ],
    "Payload.Template.Parameter": [
        ("name", 1, "string", False, None),
        ("type", 2, "uint32", False, None),
        *_values(3),
    ],
    "Payload.DataSet": [
        ("num_of_columns", 1, "uint64", False, None),
        ("columns", 2, "string", True, None),
        ("types", 3, "uint32", True, None),
        ("rows", 4, "Payload.DataSet.Row", True, None),
    ],
    "Payload.DataSet.DataSetValue": _values(1),
    "Payload.DataSet.Row": [("elements", 1, "Payload.DataSet.DataSetValue", True, None)],
    "Payload.PropertyValue": [
        ("type", 1, "uint32", False, None),
        ("is_null", 2, "bool", False, None),
        *_values(3),
        ("propertyset_value", 9, "Payload.PropertySet", False, "value"),
        ("propertysets_value", 10, "Payload.PropertySetList", False, "value"),
    ],
    "Payload.PropertySet": [
        ("keys", 1, "string", True, None),
        ("values", 2, "Payload.PropertyValue", True, None),
    ],
    "Payload.PropertySetList": [("propertyset", 1, "Payload.PropertySet", True, None)],
    "Payload.MetaData": [
        ("is_multi_part", 1, "bool", False, None),
        ("content_type", 2, "string", False, None),
        ("size", 3, "uint64", False, None),
        ("seq", 4, "uint64", False, None),
        ("file_name", 5, "string", False, None),
        ("file_type", 6, "string", False, None),
        ("md5", 7, "string", False, None),
        ("description", 8, "string", False, None),
    ],
    "Payload.Metric": [
        ("name", 1, "string", False, None),
        ("alias", 2, "uint64", False, None),
        ("timestamp", 3, "uint64", False, None),
        ("datatype", 4, "uint32", False, None),
        ("is_historical", 5, "bool", False, None),
        ("is_transient", 6, "bool", False, None),
        ("is_null", 7, "bool", False, None),
        ("metadata", 8, "Payload.MetaData", False, None),
        ("properties", 9, "Payload.PropertySet", False, None),
        *_values(10),
        ("bytes_value", 16, "bytes", False, "value"),
        ("dataset_value", 17, "Payload.DataSet", False, "value"),
        ("template_value", 18, "Payload.Template", False, "value"),
    ],
}


def _message(path: str, children: dict[str, descriptor_pb2.DescriptorProto]) -> descriptor_pb2.DescriptorProto:
    proto = descriptor_pb2.DescriptorProto(name=path.rpartition(".")[2])
    oneofs: list[str] = []
    for name, number, kind, repeated, oneof in _MESSAGES[path]:
        field = proto.field.add(name=name, number=number, label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
        if kind in _TYPES:
            field.type = _TYPES[kind]
        else:
            field.type = _F.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}.{kind}"
        if oneof is not None:
            if oneof not in oneofs:
                oneofs.append(oneof)
                proto.oneof_decl.add(name=oneof)
            field.oneof_index = oneofs.index(oneof)
    for child_path, child in children.items():
        if child_path.rpartition(".")[0] == path:
            proto.nested_type.append(child)
    return proto


def _build() -> Any:
    """The ``Payload`` class, built from ``_MESSAGES`` (children before their parents)."""
    built: dict[str, descriptor_pb2.DescriptorProto] = {}
    for path in sorted(_MESSAGES, key=lambda p: -p.count(".")):
        built[path] = _message(path, built)
    file = descriptor_pb2.FileDescriptorProto(name="edged/sparkplug_b.proto", package=PACKAGE, syntax="proto2")
    file.message_type.append(built["Payload"])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.Payload"))


Payload: Any = _build()
