"""BTHome v2 advertisements (service data of UUID 0xFCD2), written from the
public format at bthome.io.

The service data starts with a device-information byte (bit 0: encrypted,
bit 2: trigger based, bits 5-7: version, must be 2), then objects: an object
id followed by a value whose length the id fixes (little-endian). An
encrypted packet carries the objects as AES-CCM ciphertext followed by a
4-byte counter and a 4-byte MIC; the nonce is MAC + UUID (D2 FC) + device
information byte + counter, and the key is the device's 16-byte bind key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from edged.adapters.ble.formats import AdvertFormat, Decoded, service_uuid
from edged.adapters.ble.measurement import Measurement
from edged.model import Value, ValueType

UUID16 = 0xFCD2
UUID = service_uuid(UUID16)
_UUID_BYTES = UUID16.to_bytes(2, "little")
_ENCRYPTED = 0x01
_TRIGGER = 0x04
_VERSION = 2


class BTHomeError(ValueError):
    """A packet that is not valid BTHome v2, or that does not authenticate."""


class BTHomeKeyError(BTHomeError):
    """An encrypted packet for which no key is known, or whose MIC does not match the key."""


class ObjectType(NamedTuple):
    key: str
    size: int  # bytes of the value; 0 = length-prefixed (text, raw)
    signed: bool
    factor: float
    unit: str | None
    type: ValueType




def _n(key: str, size: int, factor: float = 1, unit: str | None = None, signed: bool = False) -> ObjectType:
    is_int = factor >= 1 and float(factor).is_integer()
    return ObjectType(key, size, signed, factor, unit, ValueType.INT if is_int else ValueType.FLOAT)


def _b(key: str) -> ObjectType:
    return ObjectType(key, 1, False, 1, None, ValueType.BOOL)


# Object id -> meaning. Units are SenML/UCUM symbols; pressure is given in Pa
# (the packet's 0.01 hPa steps are 1 Pa) to match the Ruuvi decoder.
OBJECTS: dict[int, ObjectType] = {
    0x00: _n("packet_id", 1),
    0x01: _n("battery", 1, unit="%EL"),
    0x02: _n("temperature", 2, 0.01, "Cel", signed=True),
    0x03: _n("humidity", 2, 0.01, "%RH"),
    0x04: _n("pressure", 3, 1, "Pa"),
    0x05: _n("illuminance", 3, 0.01, "lx"),
    0x06: _n("mass", 2, 0.01, "kg"),
    0x07: _n("mass_lb", 2, 0.01, "[lb_av]"),
    0x08: _n("dewpoint", 2, 0.01, "Cel", signed=True),
    0x09: _n("count", 1),
    0x0A: _n("energy", 3, 0.001, "kWh"),
    0x0B: _n("power", 3, 0.01, "W"),
    0x0C: _n("voltage", 2, 0.001, "V"),
    0x0D: _n("pm25", 2, 1, "ug/m3"),
    0x0E: _n("pm10", 2, 1, "ug/m3"),
    0x0F: _b("generic"),
    0x10: _b("power_on"),
    0x11: _b("opening"),
    0x12: _n("co2", 2, 1, "ppm"),
    0x13: _n("tvoc", 2, 1, "ug/m3"),
    0x14: _n("moisture", 2, 0.01, "%"),
    0x15: _b("battery_low"),
    0x16: _b("battery_charging"),
    0x17: _b("carbon_monoxide"),
    0x18: _b("cold"),
    0x19: _b("connectivity"),
    0x1A: _b("door"),
    0x1B: _b("garage_door"),
    0x1C: _b("gas_detected"),
    0x1D: _b("heat"),
    0x1E: _b("light"),
    0x1F: _b("lock"),
    0x20: _b("moisture_detected"),
    0x21: _b("motion"),
    0x22: _b("moving"),
    0x23: _b("occupancy"),
    0x24: _b("plug"),
    0x25: _b("presence"),
    0x26: _b("problem"),
    0x27: _b("running"),
    0x28: _b("safety"),
    0x29: _b("smoke"),
    0x2A: _b("sound"),
    0x2B: _b("tamper"),
    0x2C: _b("vibration"),
    0x2D: _b("window"),
    0x2E: _n("humidity", 1, 1, "%RH"),
    0x2F: _n("moisture", 1, 1, "%"),
    0x3A: ObjectType("button", 1, False, 1, None, ValueType.STR),
    0x3C: ObjectType("dimmer", 2, False, 1, None, ValueType.STR),
    0x3D: _n("count", 2),
    0x3E: _n("count", 4),
    0x3F: _n("rotation", 2, 0.1, "deg", signed=True),
    0x40: _n("distance", 2, 1, "mm"),
    0x41: _n("distance_m", 2, 0.1, "m"),
    0x42: _n("duration", 3, 0.001, "s"),
    0x43: _n("current", 2, 0.001, "A"),
    0x44: _n("speed", 2, 0.01, "m/s"),
    0x45: _n("temperature", 2, 0.1, "Cel", signed=True),
    0x46: _n("uv_index", 1, 0.1),
    0x47: _n("volume", 2, 0.1, "L"),
    0x48: _n("volume_ml", 2, 1, "mL"),
    0x49: _n("volume_flow_rate", 2, 0.001, "m3/h"),
    0x4A: _n("voltage", 2, 0.1, "V"),
    0x4B: _n("gas", 3, 0.001, "m3"),
    0x4C: _n("gas", 4, 0.001, "m3"),
    0x4D: _n("energy", 4, 0.001, "kWh"),
    0x4E: _n("volume", 4, 0.001, "L"),
    0x4F: _n("water", 4, 0.001, "L"),
    0x50: _n("timestamp", 4, 1, "s"),
    0x51: _n("acceleration", 2, 0.001, "m/s2"),
    0x52: _n("gyroscope", 2, 0.001, "deg/s"),
    0x53: ObjectType("text", 0, False, 1, None, ValueType.STR),
    0x54: ObjectType("raw", 0, False, 1, None, ValueType.STR),
    0x55: _n("volume_storage", 4, 0.001, "L"),
    0x56: _n("conductivity", 2, 1, "uS/cm"),
    0x57: _n("temperature", 1, 1, "Cel", signed=True),
    0x58: _n("temperature", 1, 0.35, "Cel", signed=True),
    0x59: _n("count", 1, signed=True),
    0x5A: _n("count", 2, signed=True),
    0x5B: _n("count", 4, signed=True),
    0x5C: _n("power", 4, 0.01, "W", signed=True),
    0x5D: _n("current", 2, 0.001, "A", signed=True),
    0x5E: _n("direction", 2, 0.01, "deg"),
    0x5F: _n("precipitation", 2, 0.1, "mm"),
    0x60: _n("channel", 1),
    0x61: _n("rotational_speed", 2, 1, "1/min"),
    0xF0: _n("device_type", 2),
    0xF1: ObjectType("firmware", 4, False, 1, None, ValueType.STR),
    0xF2: ObjectType("firmware", 3, False, 1, None, ValueType.STR),
}

BUTTON_EVENTS = {
    0x00: "none", 0x01: "press", 0x02: "double_press", 0x03: "triple_press", 0x04: "long_press",
    0x05: "long_double_press", 0x06: "long_triple_press", 0x80: "hold_press", 0xFE: "hold_press",
}
DIMMER_EVENTS = {0x00: "none", 0x01: "rotate_left", 0x02: "rotate_right"}


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded BTHome v2 packet. ``measurements`` keep the packet's order; a key
    repeated in one packet (two temperature probes) is numbered ``temperature_2``."""

    measurements: tuple[Measurement, ...]
    encrypted: bool
    trigger_based: bool
    packet_id: int | None
    counter: int | None  # the encryption counter
    truncated: bool  # an unknown object id ended decoding early; what came before is kept


def mac_bytes(address: str) -> bytes:
    return bytes.fromhex(address.replace(":", ""))


def _nonce(mac: bytes, info: int, counter: bytes) -> bytes:
    return mac + _UUID_BYTES + bytes([info]) + counter


def decrypt(data: bytes, address: str, key: bytes) -> tuple[bytes, int]:
    """Return the objects of encrypted service data ``data`` and its counter;
    raise ``BTHomeKeyError`` if the MIC does not authenticate with ``key``."""
    if len(data) < 1 + 4 + 4:
        raise BTHomeError(f"encrypted packet of {len(data)} bytes is too short")
    info, payload, counter, mic = data[0], data[1:-8], data[-8:-4], data[-4:]
    try:
        objects = AESCCM(key, tag_length=4).decrypt(_nonce(mac_bytes(address), info, counter), payload + mic, None)
    except InvalidTag as exc:
        raise BTHomeKeyError("the bind key does not match (MIC check failed)") from exc
    return objects, int.from_bytes(counter, "little")


def encrypt(objects: bytes, address: str, key: bytes, counter: int, trigger_based: bool = False) -> bytes:
    """Build encrypted service data carrying ``objects`` (what a sensor sends)."""
    info = (_VERSION << 5) | _ENCRYPTED | (_TRIGGER if trigger_based else 0)
    count = counter.to_bytes(4, "little")
    sealed = AESCCM(key, tag_length=4).encrypt(_nonce(mac_bytes(address), info, count), objects, None)
    return bytes([info]) + sealed[:-4] + count + sealed[-4:]


def decode(data: bytes, address: str, key: bytes | None = None) -> Packet:
    """Decode BTHome v2 service data sent by ``address``; ``key`` is its bind key if it encrypts."""
    if not data:
        raise BTHomeError("empty service data")
    info = data[0]
    version = info >> 5
    if version != _VERSION:
        raise BTHomeError(f"BTHome version {version} is not supported (only version 2)")
    encrypted = bool(info & _ENCRYPTED)
    counter = None
    if encrypted:
        if key is None:
            raise BTHomeKeyError("the packet is encrypted and no bind key is configured for this address")
        objects, counter = decrypt(data, address, key)
    else:
        objects = data[1:]
    measurements, packet_id, truncated = _objects(objects)
    return Packet(tuple(measurements), encrypted, bool(info & _TRIGGER), packet_id, counter, truncated)


def _objects(data: bytes) -> tuple[list[Measurement], int | None, bool]:
    out: list[Measurement] = []
    seen: dict[str, int] = {}
    packet_id = None
    i, end = 0, len(data)
    while i < end:
        object_id = data[i]
        kind = OBJECTS.get(object_id)
        if kind is None:
            return out, packet_id, True  # lengths are fixed by id: an unknown id cannot be skipped
        i += 1
        size = kind.size
        if size == 0:
            if i >= end:
                raise BTHomeError(f"object 0x{object_id:02x} lacks its length byte")
            size = data[i]
            i += 1
        if i + size > end:
            raise BTHomeError(f"object 0x{object_id:02x} needs {size} bytes, {end - i} left")
        raw = data[i : i + size]
        i += size
        value = _value(object_id, kind, raw)
        if object_id == 0x00:
            packet_id = value  # type: ignore[assignment]
        count = seen.get(kind.key, 0) + 1
        seen[kind.key] = count
        key = kind.key if count == 1 else f"{kind.key}_{count}"
        out.append(Measurement(key, value, kind.unit, kind.type))
    return out, packet_id, False


def _value(object_id: int, kind: ObjectType, raw: bytes) -> Value:
    if kind.type is ValueType.BOOL:
        return raw[0] != 0
    if kind.type is ValueType.STR:
        if object_id == 0x3A:
            return BUTTON_EVENTS.get(raw[0], f"event_{raw[0]:02x}")
        if object_id == 0x3C:
            event = DIMMER_EVENTS.get(raw[0], f"event_{raw[0]:02x}")
            return event if raw[0] == 0 else f"{event} {raw[1]}"
        if object_id == 0x53:
            return raw.decode("utf-8", "replace")
        if object_id in (0xF1, 0xF2):
            return ".".join(str(part) for part in reversed(raw))
        return raw.hex()
    number = int.from_bytes(raw, "little", signed=kind.signed)
    if kind.type is ValueType.INT:
        return number * int(kind.factor)
    return round(number * kind.factor, 6)


def encode(values: list[tuple[int, float | int]], packet_id: int | None = None) -> bytes:
    """Encode numeric objects as BTHome v2 object bytes (for simulators and tests)."""
    out = bytearray()
    if packet_id is not None:
        out += bytes([0x00, packet_id & 0xFF])
    for object_id, value in values:
        kind = OBJECTS[object_id]
        number = round(value / kind.factor) if kind.type is not ValueType.BOOL else int(bool(value))
        out += bytes([object_id]) + number.to_bytes(kind.size, "little", signed=kind.signed)
    return bytes(out)


def service_data(objects: bytes, trigger_based: bool = False) -> bytes:
    """Unencrypted service data carrying ``objects``."""
    return bytes([(_VERSION << 5) | (_TRIGGER if trigger_based else 0)]) + objects




def _advert(data: bytes, address: str, rssi: int, key: bytes | None) -> Decoded:
    packet = decode(data, address, key)  # ValueError too for an address that is no MAC (macOS gives UUIDs)
    measurements = tuple(m for m in packet.measurements if m.key != "packet_id")
    return Decoded(address.lower(), "BTHome v2", data, measurements, packet.counter)


FORMAT = AdvertFormat.service_data("bthome", "BTHome", UUID16, _advert, keyed=True)
