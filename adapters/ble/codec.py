"""Values of GATT characteristics: bytes <-> point values by decoder name.

Integer decoders multiply by ``scale`` (a point is ``int`` when the scale is
1, else ``float``); ``float32`` is IEEE 754; ``utf8`` is text; ``raw`` is the
bytes as a hex string. Encoding is the inverse and refuses values the
characteristic cannot hold.
"""

from __future__ import annotations

import math
import struct

from edged.model import Value, ValueType

_INTS: dict[str, tuple[int, bool, str]] = {
    "int8": (1, True, "little"), "uint8": (1, False, "little"),
    "int16_le": (2, True, "little"), "int16_be": (2, True, "big"),
    "uint16_le": (2, False, "little"), "uint16_be": (2, False, "big"),
    "int32_le": (4, True, "little"), "int32_be": (4, True, "big"),
    "uint32_le": (4, False, "little"), "uint32_be": (4, False, "big"),
}
_FLOATS = {"float32_le": struct.Struct("<f"), "float32_be": struct.Struct(">f")}


def value_type(decoder: str, scale: float = 1.0) -> ValueType:
    if decoder in _INTS:
        return ValueType.INT if scale == 1 else ValueType.FLOAT
    if decoder in _FLOATS:
        return ValueType.FLOAT
    return ValueType.STR


def decode(decoder: str, data: bytes, scale: float = 1.0) -> Value:
    """Return the value in ``data``; raise ``ValueError`` if the bytes do not fit the decoder."""
    if decoder in _INTS:
        size, signed, order = _INTS[decoder]
        if len(data) != size:
            raise ValueError(f"{decoder} needs {size} bytes; got {len(data)}: {data.hex()}")
        number = int.from_bytes(data, order, signed=signed)  # type: ignore[arg-type]
        return number if scale == 1 else round(number * scale, 9)
    if decoder in _FLOATS:
        if len(data) != 4:
            raise ValueError(f"{decoder} needs 4 bytes; got {len(data)}: {data.hex()}")
        return _FLOATS[decoder].unpack(data)[0]
    if decoder == "utf8":
        try:
            return data.decode("utf-8").rstrip("\x00")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text: {data.hex()}") from exc
    if decoder == "raw":
        return data.hex()
    raise ValueError(f"unknown decoder {decoder!r}")


def encode(decoder: str, value: Value, scale: float = 1.0) -> bytes:
    """Return the bytes that carry ``value``; raise ``ValueError`` saying why it cannot."""
    if decoder in _INTS:
        size, signed, order = _INTS[decoder]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"expected a number; got {value!r}")
        number = round(value / scale)
        low, high = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << (8 * size)) - 1)
        if not low <= number <= high:
            raise ValueError(f"{value!r} is out of range for {decoder} with scale {scale:g} "
                             f"({low * scale:g} to {high * scale:g})")
        return number.to_bytes(size, order, signed=signed)  # type: ignore[arg-type]
    if decoder in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number; got {value!r}")
        return _FLOATS[decoder].pack(value)
    if decoder == "utf8":
        return str(value).encode("utf-8")
    if decoder == "raw":
        try:
            return bytes.fromhex(str(value))
        except ValueError as exc:
            raise ValueError(f"expected hexadecimal bytes such as '01ff'; got {value!r}") from exc
    raise ValueError(f"unknown decoder {decoder!r}")
