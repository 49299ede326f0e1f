"""Tuya's 0xEF00 cluster: data points in cluster-specific frames.

TS0601 devices carry every value as a data point: the device sends Data
Response (0x01) or Data Report (0x02; 0x06 on some) frames, the gateway
sends Set Data (0x00). After the ZCL header the payload is a 16-bit
sequence number (big-endian), then one or more data points, each: its
number (1 byte), its type (1 byte), the length (2 bytes, big-endian) and the
value (big-endian): raw bytes (0), bool (1), a 32-bit signed value (2), a
string (3), an enum (4, one byte) or a bitmap (5; 1, 2 or 4 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

CLUSTER_ID = 0xEF00
SET_DATA = 0x00
DATA_QUERY = 0x03  # asks the device to report every data point now
REPORTS = frozenset({0x01, 0x02, 0x06})  # data response, data report, status report

# Many Tuya devices stay silent (and some leave the network) until the gateway reads these Basic
# cluster attributes in one request, as Tuya's own hubs do when a device joins: manufacturer name,
# ZCL version, application version, model, power source and attribute reporting status.
WAKE_ATTRIBUTES = (0x0004, 0x0000, 0x0001, 0x0005, 0x0007, 0xFFFE)
_MANUFACTURER_PREFIXES = ("_TZ", "_TYZB", "_TYST")  # _TZE200_..., _TZ3000_..., _TYZB01_..., _TYST11_...


def wakes_on_basic_read(manufacturer: str | None) -> bool:
    """True for a device by Tuya, known by its manufacturer name."""
    return manufacturer is not None and manufacturer.startswith(_MANUFACTURER_PREFIXES)

RAW, BOOL, VALUE, STRING, ENUM, BITMAP = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True, slots=True)
class Datapoint:
    """One data point as it travels: its number, its Tuya type and its value."""

    dp: int
    type: int
    value: int | bool | bytes | str

    def __post_init__(self) -> None:
        if not 0 <= self.dp <= 255 or self.type not in (RAW, BOOL, VALUE, STRING, ENUM, BITMAP):
            raise ValueError(f"bad data point {self.dp} of type {self.type}")

    def serialize(self) -> bytes:
        if self.type == RAW:
            data = bytes(self.value)  # type: ignore[arg-type]
        elif self.type == STRING:
            data = str(self.value).encode()
        elif self.type == VALUE:
            data = int(self.value).to_bytes(4, "big", signed=True)
        elif self.type == BITMAP:
            data = int(self.value).to_bytes(4, "big")
        else:  # bool, enum
            data = int(self.value).to_bytes(1, "big")
        return bytes([self.dp, self.type]) + len(data).to_bytes(2, "big") + data


def parse(payload: bytes) -> list[Datapoint]:
    """The data points of a report's payload (after the ZCL header); ``ValueError`` if it is cut short."""
    if len(payload) < 2:
        raise ValueError("a Tuya frame starts with a 2-byte sequence number")
    points, rest = [], payload[2:]
    while rest:
        if len(rest) < 4:
            raise ValueError(f"a data point header needs 4 bytes, {len(rest)} left")
        dp, kind, length = rest[0], rest[1], int.from_bytes(rest[2:4], "big")
        data, rest = rest[4 : 4 + length], rest[4 + length :]
        if len(data) != length:
            raise ValueError(f"data point {dp} says {length} bytes, {len(data)} left")
        points.append(Datapoint(dp, kind, _value(kind, data)))
    return points


def _value(kind: int, data: bytes) -> int | bool | bytes | str:
    if kind == BOOL:
        return bool(data[0]) if data else False
    if kind == VALUE:
        return int.from_bytes(data, "big", signed=True)
    if kind in (ENUM, BITMAP):
        return int.from_bytes(data, "big")
    if kind == STRING:
        return data.decode(errors="replace")
    return bytes(data)


def set_data(sequence: int, points: list[Datapoint]) -> bytes:
    """A Set Data payload (after the ZCL header)."""
    return (sequence & 0xFFFF).to_bytes(2, "big") + b"".join(p.serialize() for p in points)
