"""Registers to values and back: types, the four byte/word orders, scale and offset.

Pure and fast. A ``BlockCodec`` is compiled once per planned read and turns
the registers of that read into the values of all its points with one
``struct`` call per byte layout, not one call per point.

Orders name the bytes of a value, A the most significant, in the order they
arrive on the wire. Packing the registers once big-endian (the wire image)
and once with the bytes of every register swapped makes each order one
plain ``struct`` format::

    ABCD  wire image,     big-endian        (">")
    DCBA  wire image,     little-endian     ("<")
    BADC  swapped image,  big-endian        (">")
    CDAB  swapped image,  little-endian     ("<")

The same holds for 64-bit values (word order reversed for CDAB) and for
16-bit ones (CDAB reads as ABCD, BADC as DCBA).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edged.adapters.modbus.config import DataType, Order, PointConfig, Table
from edged.model import Value, ValueType

# struct code of each numeric type; bit reads its whole register.
CODE = {
    DataType.BIT: "H",
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
INTEGER = {DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64}
# (swapped image?, endianness) for each order
LAYOUT = {Order.ABCD: (False, ">"), Order.DCBA: (False, "<"), Order.BADC: (True, ">"), Order.CDAB: (True, "<")}


def value_type(point: PointConfig) -> ValueType:
    """The edged value type a point reports."""
    kind = point.data_type
    if kind in (DataType.BOOL, DataType.BIT):
        return ValueType.BOOL
    if kind is DataType.STRING:
        return ValueType.STR
    if kind in INTEGER and not _scaled(point):
        return ValueType.INT
    return ValueType.FLOAT


def _scaled(point: PointConfig) -> bool:
    return point.scale != 1 or point.offset != 0


def _decimals(point: PointConfig) -> int | None:
    """Digits to round a scaled value to: as fine as scale and offset (0.1 -> 1), unless set."""
    if point.decimals is not None:
        return point.decimals
    if not _scaled(point) or point.data_type not in INTEGER:
        return None
    digits = 0
    for number in (point.scale, point.offset):
        text = repr(abs(number))
        if "e" in text:
            return None
        digits = max(digits, len(text.partition(".")[2].rstrip("0")))
    return digits


def _converter(point: PointConfig) -> Callable[[object], Value] | None:
    """What turns the raw struct value of ``point`` into its reported value (None: nothing)."""
    kind = point.data_type
    if kind is DataType.BIT:
        mask = 1 << (point.bit or 0)
        return lambda raw: bool(raw & mask)  # type: ignore[operator]
    if kind is DataType.STRING:
        encoding = point.encoding
        return lambda raw: raw.rstrip(b"\x00 ").decode(encoding, "replace")  # type: ignore[attr-defined]
    scale, offset, digits = point.scale, point.offset, _decimals(point)
    if _scaled(point):
        if digits is None:
            return lambda raw: raw * scale + offset  # type: ignore[operator]
        return lambda raw: round(raw * scale + offset, digits)  # type: ignore[operator]
    if digits is not None:
        return lambda raw: round(raw, digits)  # type: ignore[call-overload]
    return None


@dataclass(frozen=True, slots=True)
class _Layer:
    """Non-overlapping points read with one struct from one image."""

    swapped: bool
    unpack: Callable[[bytes], tuple[object, ...]]


class BlockCodec:
    """Decodes the registers (or bits) of one read starting at ``start`` into
    the values of ``points``. ``self.points`` is the points in the order
    ``decode`` returns their values."""

    def __init__(self, table: Table, start: int, count: int, points: Sequence[PointConfig]) -> None:
        self.table = table
        self.start = start
        self.count = count
        if table.is_bits:
            self.points: tuple[PointConfig, ...] = tuple(points)
            self._offsets = tuple(p.address - start for p in points)
            return
        self._pack_wire = struct.Struct(f">{count}H").pack
        self._pack_swapped = struct.Struct(f"<{count}H").pack
        layers: dict[tuple[bool, str], list[list[PointConfig]]] = {}
        for point in sorted(points, key=lambda p: p.address):
            swapped, endian = LAYOUT[point.order]
            stacks = layers.setdefault((swapped, endian), [])
            for stack in stacks:  # first layer this point does not overlap
                if stack[-1].address + stack[-1].width <= point.address:
                    stack.append(point)
                    break
            else:
                stacks.append([point])
        ordered: list[PointConfig] = []
        self._layers: list[_Layer] = []
        for (swapped, endian), stacks in layers.items():
            for stack in stacks:
                self._layers.append(_Layer(swapped, struct.Struct(endian + _format(stack, start)).unpack_from))
                ordered.extend(stack)
        self.points = tuple(ordered)
        self._convert = tuple((i, f) for i, p in enumerate(ordered) if (f := _converter(p)) is not None)
        self._needs_swapped = any(layer.swapped for layer in self._layers)
        self._needs_wire = any(not layer.swapped for layer in self._layers)

    def decode(self, data: Sequence[int] | Sequence[bool]) -> list[Value]:
        """Values of ``self.points`` from the registers (or bits) of the read."""
        if self.table.is_bits:
            return [bool(data[i]) for i in self._offsets]
        wire = self._pack_wire(*data) if self._needs_wire else b""
        swapped = self._pack_swapped(*data) if self._needs_swapped else b""
        values: list[Value] = []
        for layer in self._layers:
            values.extend(layer.unpack(swapped if layer.swapped else wire))  # type: ignore[arg-type]
        for i, convert in self._convert:
            values[i] = convert(values[i])
        return values


def _format(points: list[PointConfig], start: int) -> str:
    """A struct format (without endianness) reading ``points`` from a block at ``start``."""
    parts: list[str] = []
    at = start
    for point in points:
        if point.address > at:
            parts.append(f"{(point.address - at) * 2}x")
        kind = point.data_type
        parts.append(f"{point.width * 2}s" if kind is DataType.STRING else CODE[kind])
        at = point.address + point.width
    return "".join(parts)


def encode(point: PointConfig, value: Value) -> list[int] | bool:
    """The registers (or the coil state) that make ``point`` read ``value``.

    Raises ``ValueError`` saying why when the value does not fit the point.
    """
    kind = point.data_type
    if kind is DataType.BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"expected a bool, got {value!r}")
        return value
    if kind is DataType.BIT:
        raise ValueError("bit points are read-only")
    swapped, endian = LAYOUT[point.order]
    if kind is DataType.STRING:
        raw = str(value).encode(point.encoding)
        size = point.width * 2
        if len(raw) > size:
            raise ValueError(f"{len(raw)} bytes do not fit {point.width} registers ({size} bytes)")
        data = raw.ljust(size, b"\x00")
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        raw_value: float | int = (value - point.offset) / point.scale if _scaled(point) else value
        if kind in INTEGER:
            if isinstance(raw_value, float):
                if not math.isfinite(raw_value):
                    raise ValueError(f"{value!r} is not a finite number")
                raw_value = round(raw_value)
            try:
                data = struct.pack(endian + CODE[kind], raw_value)
            except struct.error as exc:
                raise ValueError(f"{value!r} is out of range for {kind.value}") from exc
        else:
            try:
                data = struct.pack(endian + CODE[kind], raw_value)
            except OverflowError as exc:
                raise ValueError(f"{value!r} is out of range for {kind.value}") from exc
    count = len(data) // 2
    return list(struct.unpack(f"{'<' if swapped else '>'}{count}H", data))
