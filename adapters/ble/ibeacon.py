"""iBeacon advertisements: Apple (company 0x004C) manufacturer data of type
0x02, length 0x15: proximity UUID (16 bytes), major and minor (uint16,
big-endian) and the calibrated power at 1 m (int8 dBm). edged uses them for
presence: a beacon is a device that is online while it is heard."""

from __future__ import annotations

import functools
import struct
import uuid
from typing import NamedTuple

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble.formats import AdvertFormat, Decoded
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

COMPANY_ID = 0x004C
_PREFIX = b"\x02\x15"
_new = tuple.__new__  # a Measurement or Decoded made from its fields without a call into Python code
_PRESENT = Measurement("present", True, None, ValueType.BOOL)
_LAYOUT = struct.Struct(">2x16sHHb")  # after the prefix: proximity UUID, major, minor, power at 1 m


class IBeacon(NamedTuple):
    uuid: str
    major: int
    minor: int
    power: int  # measured power at 1 m, dBm

    @property
    def native_id(self) -> str:
        return f"ibeacon-{self.uuid}-{self.major}-{self.minor}"


def decode(data: bytes) -> IBeacon | None:
    """Return the beacon in Apple manufacturer data, or None if it is another Apple frame."""
    if len(data) != 23 or not data.startswith(_PREFIX):
        return None
    raw, major, minor, power = _LAYOUT.unpack(data)
    return _new(IBeacon, (_uuid_text(raw), major, minor, power))


@functools.lru_cache(maxsize=256)
def _uuid_text(raw: bytes) -> str:
    """The proximity UUID as text (a place has few: they name an operator or a site)."""
    return str(uuid.UUID(bytes=raw))


def encode(beacon: IBeacon) -> bytes:
    return (_PREFIX + uuid.UUID(beacon.uuid).bytes + beacon.major.to_bytes(2, "big")
            + beacon.minor.to_bytes(2, "big") + (beacon.power & 0xFF).to_bytes(1, "big"))


def distance(power: int, rssi: int, n: float = 2.0) -> float:
    """Rough distance in metres from the log-distance path loss model."""
    return round(10 ** ((power - rssi) / (10 * n)), 2)


def _advert(device: BLEDevice, adv: AdvertisementData, now: float) -> Decoded | None:
    data = adv.manufacturer_data[COMPANY_ID]
    rssi = adv.rssi
    beacon = decode(data)
    if beacon is None:
        return None
    return _new(Decoded, (beacon.native_id, "iBeacon", data, (
        _PRESENT,
        _new(Measurement, ("rssi", rssi, "dBm", ValueType.INT)),
        _new(Measurement, ("distance", distance(beacon.power, rssi), "m", ValueType.FLOAT)),
    ), None))  # fmt: skip


# A beacon is the device, not the phone or tag that sends it: it reports its own RSSI.
FORMAT = AdvertFormat("ibeacon", "iBeacon", lambda key: _advert, company_ids=frozenset({COMPANY_ID}), prefix=_PREFIX,
                      per_device=False, rssi=False, models=lambda: ["any iBeacon (presence, RSSI, distance)"])
