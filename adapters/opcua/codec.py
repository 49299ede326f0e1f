"""edged values to OPC UA Variants: a value written to a node, or passed to a method, takes its declared data type.

``variant_type`` maps a DataType NodeId to the built-in ``VariantType`` the
value must be encoded as (``WRITABLE`` lists the ones edged can write);
``coerce`` turns a command value into that type or raises ``CommandError``
saying why it does not fit.
"""

from __future__ import annotations

import math

from asyncua import ua

from edged.errors import CommandError
from edged.model import Value

_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT_MAX = 3.4028234663852886e38
WRITABLE = frozenset(
    {ua.VariantType.Boolean, ua.VariantType.Float, ua.VariantType.Double, ua.VariantType.String, *_INT_RANGES}
)

# Standard subtypes of built-in types (Part 3/5) that are encoded as their parent.
_SUBTYPES: dict[int, ua.VariantType] = {
    ua.ObjectIds.Duration: ua.VariantType.Double,
    ua.ObjectIds.Enumeration: ua.VariantType.Int32,
    ua.ObjectIds.UtcTime: ua.VariantType.DateTime,
    ua.ObjectIds.IntegerId: ua.VariantType.UInt32,
    ua.ObjectIds.Counter: ua.VariantType.UInt32,
    ua.ObjectIds.Index: ua.VariantType.UInt32,
    ua.ObjectIds.LocaleId: ua.VariantType.String,
    ua.ObjectIds.NumericRange: ua.VariantType.String,
}


def variant_type(data_type: ua.NodeId) -> ua.VariantType | None:
    """The built-in type a value of ``data_type`` is encoded as, if edged knows it."""
    if data_type.NamespaceIndex != 0 or not isinstance(data_type.Identifier, int):
        return None
    if 1 <= data_type.Identifier <= 25:
        return ua.VariantType(data_type.Identifier)
    return _SUBTYPES.get(data_type.Identifier)


def coerce(value: Value, vtype: ua.VariantType) -> Value:
    """Return ``value`` as a Python value that encodes as ``vtype``; raise ``CommandError`` if it does not fit."""
    name = vtype.name
    if vtype not in WRITABLE:
        raise CommandError(f"the node's data type {name} cannot be written by edged")
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise CommandError(f"the node takes a Boolean; got {value!r}")
    if vtype is ua.VariantType.String:
        if isinstance(value, str):
            return value
        raise CommandError(f"the node takes a String; got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"the node takes a number ({name}); got {value!r}")
    if vtype in _INT_RANGES:
        if isinstance(value, float):
            if not value.is_integer():
                raise CommandError(f"the node takes a whole number ({name}); got {value!r}")
            value = int(value)
        low, high = _INT_RANGES[vtype]
        if not low <= value <= high:
            raise CommandError(f"{value} is out of range for {name} ({low}..{high})")
        return value
    value = float(value)
    if vtype is ua.VariantType.Float and math.isfinite(value) and abs(value) > _FLOAT_MAX:
        raise CommandError(f"{value:g} is out of range for Float")
    return value
