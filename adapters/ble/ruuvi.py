"""RuuviTag data format 5 ("RAWv2"), the manufacturer data of company 0x0499.

24 bytes, big-endian: format (5), temperature (int16, 0.005 Cel), humidity
(uint16, 0.0025 %RH), pressure (uint16, Pa above 50000), acceleration x, y, z
(int16, mG), power info (uint16: 11 bits battery mV above 1600, 5 bits tx
power in 2 dBm steps above -40), movement counter (uint8), measurement
sequence (uint16), MAC (6 bytes). The all-ones (or 0x8000 for signed) value
of a field means "not available" and yields no measurement.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from edged.adapters.ble.formats import AdvertFormat, Decoded
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

COMPANY_ID = 0x0499
_FORMAT = struct.Struct(">BhHHhhhHBH6s")


class RuuviError(ValueError):
    """Manufacturer data that is not a valid format 5 frame."""


class Frame(NamedTuple):
    measurements: tuple[Measurement, ...]
    sequence: int | None
    mac: str


def decode(data: bytes) -> Frame:
    """Decode the manufacturer data of company 0x0499 (without the company id)."""
    if not data or data[0] != 5:
        raise RuuviError(f"RuuviTag data format {data[0] if data else None} is not supported (only 5)")
    if len(data) != _FORMAT.size:
        raise RuuviError(f"a format 5 frame has {_FORMAT.size} bytes; got {len(data)}")
    _, temp, hum, pres, ax, ay, az, power, movement, seq, mac = _FORMAT.unpack(data)
    battery, tx = power >> 5, power & 0x1F
    out: list[Measurement] = []
    if temp != -0x8000:
        out.append(Measurement("temperature", round(temp * 0.005, 3), "Cel", ValueType.FLOAT))
    if hum != 0xFFFF:
        out.append(Measurement("humidity", round(hum * 0.0025, 4), "%RH", ValueType.FLOAT))
    if pres != 0xFFFF:
        out.append(Measurement("pressure", pres + 50000, "Pa", ValueType.INT))
    for axis, value in (("x", ax), ("y", ay), ("z", az)):
        if value != -0x8000:
            out.append(Measurement(f"acceleration_{axis}", value / 1000, "[g]", ValueType.FLOAT))
    if battery != 0x7FF:
        out.append(Measurement("battery_voltage", battery + 1600, "mV", ValueType.INT))
    if tx != 0x1F:
        out.append(Measurement("tx_power", -40 + 2 * tx, "dBm", ValueType.INT))
    if movement != 0xFF:
        out.append(Measurement("movement_counter", movement, None, ValueType.INT))
    sequence = None if seq == 0xFFFF else seq
    if sequence is not None:
        out.append(Measurement("sequence", sequence, None, ValueType.INT))
    return Frame(tuple(out), sequence, ":".join(f"{b:02X}" for b in mac))


def encode(
    temperature: float, humidity: float, pressure: int, acceleration: tuple[float, float, float],
    battery_mv: int, tx_power: int, movement: int, sequence: int, mac: str,
) -> bytes:
    """Build a format 5 frame (for simulators and tests)."""
    power = ((battery_mv - 1600) << 5) | ((tx_power + 40) // 2)
    ax, ay, az = (round(a * 1000) for a in acceleration)
    return _FORMAT.pack(
        5, round(temperature / 0.005), round(humidity / 0.0025), pressure - 50000, ax, ay, az,
        power, movement & 0xFF, sequence & 0xFFFF, bytes.fromhex(mac.replace(":", "")),
    )


def _advert(data: bytes, address: str, rssi: int, key: bytes | None) -> Decoded:
    return Decoded(address.lower(), "RuuviTag", data, decode(data).measurements)


FORMAT = AdvertFormat.manufacturer_data("ruuvi", "Ruuvi", COMPANY_ID, _advert)
