"""The Modbus codec as properties: every value a point can hold, written
with ``encode`` and read back with ``BlockCodec``, is the value written (in
every type and byte/word order); values a point cannot hold are refused
with ``ValueError``; and any register contents a device answers with decode
to values of the point's type, never to an exception."""

from __future__ import annotations

import math
import struct

from hypothesis import assume, given
from hypothesis import strategies as st

from edged.adapters.modbus.codec import BlockCodec, encode, value_type
from edged.adapters.modbus.config import DataType, Order, PointConfig, Table
from edged.model import ValueType

ORDERS = st.sampled_from(list(Order))
RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1), DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1), DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1), DataType.UINT64: (0, 2**64 - 1),
}  # fmt: skip
WORD = st.integers(0, 0xFFFF)


def point(kind: DataType, order: Order, address: int = 0, **extra: object) -> PointConfig:
    return PointConfig(key="p", address=address, type=kind, order=order, **extra)


def read_back(p: PointConfig, registers: list[int]) -> object:
    assert len(registers) == p.width and all(0 <= r <= 0xFFFF for r in registers)
    return BlockCodec(Table.HOLDING, p.address, p.width, [p]).decode(registers)[0]


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)


@given(data=st.data(), kind=st.sampled_from(sorted(RANGES)), order=ORDERS)
def test_integers_round_trip_in_every_order(data: st.DataObject, kind: DataType, order: Order) -> None:
    low, high = RANGES[kind]
    value = data.draw(st.integers(low, high))
    p = point(kind, order)
    decoded = read_back(p, encode(p, value))  # type: ignore[arg-type]
    assert decoded == value and type(decoded) is int


@given(data=st.data(), kind=st.sampled_from(sorted(RANGES)), order=ORDERS)
def test_integers_out_of_range_are_refused(data: st.DataObject, kind: DataType, order: Order) -> None:
    low, high = RANGES[kind]
    value = data.draw(st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1),
                                st.sampled_from([math.inf, -math.inf, math.nan, 1e300])))
    try:
        encode(point(kind, order), value)
    except ValueError as exc:
        assert str(exc)
    else:
        raise AssertionError(f"{value!r} was accepted for {kind}")


@given(value=st.floats(width=32), order=ORDERS)
def test_float32_round_trips_bit_for_bit(value: float, order: Order) -> None:
    p = point(DataType.FLOAT32, order)
    decoded = read_back(p, encode(p, value))  # type: ignore[arg-type]
    assert isinstance(decoded, float) and same_float(decoded, value)


@given(value=st.floats(), order=ORDERS)
def test_float64_round_trips_bit_for_bit(value: float, order: Order) -> None:
    p = point(DataType.FLOAT64, order)
    decoded = read_back(p, encode(p, value))  # type: ignore[arg-type]
    assert isinstance(decoded, float) and same_float(decoded, value)


@given(value=st.floats(allow_nan=False), order=ORDERS)
def test_float32_takes_what_it_can_hold_and_refuses_the_rest(value: float, order: Order) -> None:
    p = point(DataType.FLOAT32, order)
    try:
        registers = encode(p, value)
    except ValueError:
        assert math.isfinite(value) and abs(value) > struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
        return
    decoded = read_back(p, registers)  # type: ignore[arg-type]
    assert decoded == struct.unpack(">f", struct.pack(">f", value))[0]


@given(text=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
       length=st.integers(1, 10), order=st.sampled_from([Order.ABCD, Order.BADC]))
def test_ascii_strings_round_trip(text: str, length: int, order: Order) -> None:
    p = point(DataType.STRING, order, length=length)
    if len(text) > 2 * length:
        try:
            encode(p, text)
        except ValueError:
            return
        raise AssertionError("a string longer than its registers was accepted")
    assert read_back(p, encode(p, text)) == text  # type: ignore[arg-type]


SCALES = st.sampled_from([0.1, 0.01, 0.5, 2.0, 10.0, 0.001])
OFFSETS = st.sampled_from([0.0, -40.0, 273.15, 1.5])


@given(data=st.data(), kind=st.sampled_from([DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32]),
       order=ORDERS, scale=SCALES, offset=OFFSETS)
def test_scaled_integers_round_trip_to_the_nearest_step(
    data: st.DataObject, kind: DataType, order: Order, scale: float, offset: float
) -> None:
    low, high = RANGES[kind]
    raw = data.draw(st.integers(low, high))
    value = raw * scale + offset
    p = point(kind, order, scale=scale, offset=offset)
    decoded = read_back(p, encode(p, value))  # type: ignore[arg-type]
    assert isinstance(decoded, float)
    assert math.isclose(decoded, value, rel_tol=1e-9, abs_tol=scale / 2), (value, decoded)


KINDS = [k for k in DataType if k not in (DataType.BOOL, DataType.STRING)]


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[PointConfig], int]:
    """Points at arbitrary (possibly overlapping) addresses of one read of up to 40 registers."""
    count = draw(st.integers(1, 40))
    points = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from([*KINDS, DataType.STRING]))
        extra: dict[str, object] = {}
        width = 1
        if kind is DataType.BIT:
            extra["bit"] = draw(st.integers(0, 15))
        elif kind is DataType.STRING:
            width = extra["length"] = draw(st.integers(1, count))  # type: ignore[assignment]
            extra["encoding"] = draw(st.sampled_from(["ascii", "utf-8", "latin-1"]))
        else:
            width = {16: 1, 32: 2, 64: 4}[8 * struct.calcsize(CODES[kind])]
            if draw(st.booleans()):
                extra["scale"] = draw(SCALES)
                extra["offset"] = draw(OFFSETS)
        assume(width <= count)
        order = draw(st.sampled_from([Order.ABCD, Order.BADC]) if kind is DataType.STRING else ORDERS)
        address = 100 + draw(st.integers(0, count - width))
        points.append(PointConfig(key=f"p{i}", address=address, type=kind, order=order, **extra))
    return points, count


CODES = {DataType.BIT: "H", DataType.INT16: "h", DataType.UINT16: "H", DataType.INT32: "i", DataType.UINT32: "I",
         DataType.INT64: "q", DataType.UINT64: "Q", DataType.FLOAT32: "f", DataType.FLOAT64: "d"}


@given(block=blocks(), data=st.data())
def test_any_registers_decode_to_values_of_each_points_type(block: tuple[list[PointConfig], int],
                                                             data: st.DataObject) -> None:
    points, count = block
    registers = data.draw(st.lists(WORD, min_size=count, max_size=count))
    codec = BlockCodec(Table.HOLDING, 100, count, points)
    values = codec.decode(registers)
    assert sorted(p.key for p in codec.points) == sorted(p.key for p in points)
    assert len(values) == len(points)
    for p, value in zip(codec.points, values, strict=True):
        kind = value_type(p)
        if kind is ValueType.BOOL:
            assert isinstance(value, bool)
        elif kind is ValueType.STR:
            assert isinstance(value, str)
        elif kind is ValueType.INT:
            assert type(value) is int
        else:
            assert isinstance(value, float), (p, value)


@given(bits=st.lists(st.booleans(), min_size=1, max_size=64), data=st.data())
def test_any_coils_decode_to_bools(bits: list[bool], data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(0, len(bits) - 1), min_size=1, max_size=8, unique=True))
    points = [PointConfig(key=f"c{i}", table=Table.COIL, address=o) for i, o in enumerate(offsets)]
    assert BlockCodec(Table.COIL, 0, len(bits), points).decode(bits) == [bits[o] for o in offsets]
