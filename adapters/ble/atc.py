"""The advertisements of thermometers running the ATC_MiThermometer custom
firmware (atc1441, pvvx), common on Xiaomi LYWSD03MMC, MHO-C401 and
Qingping CGG1 sensors: service data for UUID 0x181A, in one of two layouts.

- atc1441, 13 bytes, big-endian: MAC (6, in display order), temperature
  (int16, 0.1 Cel), humidity (uint8, %), battery (uint8, %), battery
  voltage (uint16, mV), frame counter (uint8).
- pvvx "custom", 15 bytes, little-endian: MAC (6, reversed), temperature
  (int16, 0.01 Cel), humidity (uint16, 0.01 %), battery voltage (uint16,
  mV), battery (uint8, %), measurement counter (uint8), flags (uint8).

pvvx's encrypted layouts (8 and 11 bytes) and the BTHome layout (decoded as
BTHome) are not this module's business: any other length is an error.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble.formats import AdvertFormat, Decoded, service_uuid
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

UUID16 = 0x181A
UUID = service_uuid(UUID16)
_ATC1441 = struct.Struct(">6shBBHB")
_PVVX = struct.Struct("<6shHHBBB")


class AtcError(ValueError):
    """Service data for 0x181A in neither layout."""


class Frame(NamedTuple):
    layout: str  # "atc1441" or "pvvx"
    mac: str  # as printed on the box: AA:BB:CC:DD:EE:FF
    measurements: tuple[Measurement, ...]


def decode(data: bytes) -> Frame:
    """Decode the service data of UUID 0x181A."""
    if len(data) == _ATC1441.size:
        mac, temp, humidity, battery, millivolts, _counter = _ATC1441.unpack(data)
        layout, temperature, humidity_rh = "atc1441", temp / 10, float(humidity)
    elif len(data) == _PVVX.size:
        mac, temp, humidity, millivolts, battery, _counter, _flags = _PVVX.unpack(data)
        layout, temperature, humidity_rh, mac = "pvvx", temp / 100, humidity / 100, mac[::-1]
    else:
        raise AtcError(f"0x181A service data of {len(data)} bytes is neither atc1441 (13) nor pvvx custom (15)")
    return Frame(layout, ":".join(f"{b:02X}" for b in mac), (
        Measurement("temperature", temperature, "Cel", ValueType.FLOAT),
        Measurement("humidity", humidity_rh, "%RH", ValueType.FLOAT),
        Measurement("battery", battery, "%EL", ValueType.INT),
        Measurement("battery_voltage", millivolts, "mV", ValueType.INT),
    ))  # fmt: skip


def encode_pvvx(mac: str, temperature: float, humidity: float, millivolts: int, battery: int, counter: int,
                flags: int = 0) -> bytes:  # fmt: skip
    """Build a pvvx custom frame (for simulators and tests)."""
    raw_mac = bytes.fromhex(mac.replace(":", ""))[::-1]
    return _PVVX.pack(raw_mac, round(temperature * 100), round(humidity * 100), millivolts, battery, counter & 0xFF, flags)


def _advert(device: BLEDevice, adv: AdvertisementData, now: float) -> Decoded:
    data = adv.service_data[UUID]
    reading = decode(data)
    return Decoded(device.address.lower(), f"ATC_MiThermometer ({reading.layout})", data, reading.measurements)


FORMAT = AdvertFormat("atc", "ATC", lambda key: _advert, service_uuids=frozenset({UUID}), per_device=False,
                      models=lambda: ["ATC_MiThermometer custom firmware, atc1441 and pvvx layouts (LYWSD03MMC, "
                                      "MHO-C401, CGG1, ...)"])  # fmt: skip
