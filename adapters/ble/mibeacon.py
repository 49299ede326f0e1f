"""Xiaomi MiBeacon: the service data for UUID 0xFE95 of Xiaomi's own sensor
firmware (Mi Jia thermometers, Mi Flora plant sensors, formaldehyde
detectors, ...), unencrypted frames.

Layout (little-endian): frame control (uint16: bit 3 encrypted, bit 4 MAC
included, bit 5 capability included, bit 6 object included, bits 12-15
version), product id (uint16), frame counter (uint8), MAC (6 bytes,
reversed) when bit 4, capability (uint8; with version 5 and capability bit
5, two more bytes) when bit 5, then objects: type (uint16), length (uint8),
value. Encrypted frames need the device's bind key and are not decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from edged.adapters.ble.formats import AdvertFormat, Decoded, service_uuid
from edged.adapters.ble.measurement import Measurement
from edged.model import Value, ValueType

UUID16 = 0xFE95
UUID = service_uuid(UUID16)
_ENCRYPTED, _MAC, _CAPABILITY, _OBJECT = 0x0008, 0x0010, 0x0020, 0x0040


class MiBeaconError(ValueError):
    """Service data for 0xFE95 that edged cannot decode."""


class Frame(NamedTuple):
    product: int
    counter: int
    mac: str | None
    measurements: tuple[Measurement, ...]


def _int(data: bytes, scale: float = 1.0, signed: bool = False) -> Value:
    raw = int.from_bytes(data, "little", signed=signed)
    return raw if scale == 1.0 else round(raw * scale, 2)


# object type -> (bytes it needs, [(key, unit, value type, decode)]: one entry per value it carries)
_Decode = Callable[[bytes], Value]
_OBJECTS: dict[int, tuple[int, list[tuple[str, str | None, ValueType, _Decode]]]] = {
    0x1004: (2, [("temperature", "Cel", ValueType.FLOAT, lambda d: _int(d[:2], 0.1, signed=True))]),
    0x1006: (2, [("humidity", "%RH", ValueType.FLOAT, lambda d: _int(d[:2], 0.1))]),
    0x1007: (3, [("illuminance", "lx", ValueType.INT, lambda d: _int(d[:3]))]),
    0x1008: (1, [("moisture", "%", ValueType.INT, lambda d: _int(d[:1]))]),
    0x1009: (2, [("conductivity", "uS/cm", ValueType.INT, lambda d: _int(d[:2]))]),
    0x100A: (1, [("battery", "%EL", ValueType.INT, lambda d: _int(d[:1]))]),
    0x100D: (4, [
        ("temperature", "Cel", ValueType.FLOAT, lambda d: _int(d[0:2], 0.1, signed=True)),
        ("humidity", "%RH", ValueType.FLOAT, lambda d: _int(d[2:4], 0.1)),
    ]),
    0x1010: (2, [("formaldehyde", "mg/m3", ValueType.FLOAT, lambda d: _int(d[:2], 0.01))]),
}  # fmt: skip


def decode(data: bytes) -> Frame:
    """Decode the service data of UUID 0xFE95; objects edged does not know are skipped."""
    if len(data) < 5:
        raise MiBeaconError(f"a MiBeacon frame has at least 5 bytes; got {len(data)}")
    control, product, counter = struct.unpack_from("<HHB", data)
    if control & _ENCRYPTED:
        raise MiBeaconError("the frame is encrypted (it needs the device's bind key, which edged does not take)")
    version, at, mac = control >> 12, 5, None
    if control & _MAC:
        if len(data) < at + 6:
            raise MiBeaconError("the frame ends inside its MAC address")
        mac = ":".join(f"{b:02X}" for b in reversed(data[at : at + 6]))
        at += 6
    if control & _CAPABILITY:
        if len(data) < at + 1:
            raise MiBeaconError("the frame ends inside its capability byte")
        capability = data[at]
        at += 3 if version >= 5 and capability & 0x20 else 1
    measurements: list[Measurement] = []
    while control & _OBJECT and at + 3 <= len(data):
        kind, length = struct.unpack_from("<HB", data, at)
        value = data[at + 3 : at + 3 + length]
        at += 3 + length
        if len(value) < length:
            raise MiBeaconError(f"object 0x{kind:04X} claims {length} bytes; the frame has {len(value)}")
        if kind in _OBJECTS:
            needs, values = _OBJECTS[kind]
            if length < needs:
                raise MiBeaconError(f"object 0x{kind:04X} needs {needs} bytes; got {length}")
            measurements += [Measurement(key, decode_value(value), unit, type_) for key, unit, type_, decode_value in values]
    return Frame(product, counter, mac, tuple(measurements))


def _advert(data: bytes, address: str, rssi: int, key: bytes | None) -> Decoded | None:
    frame = decode(data)
    if not frame.measurements:  # frames without an object (pairing, keep-alive) say nothing
        return None
    return Decoded(address.lower(), f"Xiaomi MiBeacon 0x{frame.product:04X}", data, frame.measurements)


FORMAT = AdvertFormat.service_data("mibeacon", "MiBeacon", UUID16, _advert)
