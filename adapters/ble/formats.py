"""The advertisement formats the BLE adapter decodes: one table.

A format is a family of devices and the module that decodes it. Most are the
parsers the Home Assistant community keeps as standalone libraries on the
sensor-state-data model (bthome-ble, xiaomi-ble, ruuvitag-ble, govee-ble,
inkbird-ble, qingping-ble, sensorpush-ble, thermopro-ble), wrapped in
``families/``; the ATC_MiThermometer custom layouts and iBeacon are decoded
here (``atc.py``, ``ibeacon.py``). Each module exports ``FORMAT``, an
``AdvertFormat``: what claims an advertisement for the family (service-data
UUIDs, company ids of manufacturer data, advertised names or UUIDs), the
patterns BlueZ matches in passive scanning, and ``decoder(key)``, which
makes the decoder of one device.

This module imports neither bleak nor a parser, so that a configuration is
checked against ``NAMES`` at no cost; a family's module (and its library) is
imported only when the family is enabled in ``formats:``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from edged.adapters.ble.measurement import Measurement

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

# The families, in the order an advertisement's frames are decoded in, and their modules.
MODULES = {
    "bthome": ".families.bthome",
    "atc": ".atc",
    "xiaomi": ".families.xiaomi",
    "ruuvi": ".families.ruuvi",
    "ibeacon": ".ibeacon",
    "govee": ".families.govee",
    "inkbird": ".families.inkbird",
    "qingping": ".families.qingping",
    "sensorpush": ".families.sensorpush",
    "thermopro": ".families.thermopro",
}
NAMES = tuple(MODULES)
ALIASES = {"mibeacon": "xiaomi"}  # older names still accepted in ``formats:``

SERVICE_DATA_UUID16 = 0x16  # advertising data types (Bluetooth Assigned Numbers 2.3)
COMPLETE_LOCAL_NAME = 0x09
COMPLETE_UUID128_LIST = 0x07
MANUFACTURER_DATA = 0xFF


class Decoded(NamedTuple):
    """What one advertisement said about one device."""

    native_id: str  # the address (lower case), or ibeacon-<uuid>-<major>-<minor>
    model: str
    payload: bytes  # the frame itself: equal payloads are duplicates
    measurements: tuple[Measurement, ...]
    manufacturer: str | None = None


class Decoder(Protocol):
    """One device's decoder: the frames of ``adv`` from ``device`` at loop time ``now`` -> what
    they say, or None when they say nothing new. A frame of the family that cannot be used
    raises ``ValueError`` saying why (``Replay`` for an encrypted frame heard before)."""

    def __call__(self, device: BLEDevice, adv: AdvertisementData, now: float) -> Decoded | None: ...


class Replay(ValueError):
    """An encrypted frame whose counter is not above the last one taken from the device."""


class NeedsKey(ValueError):
    """Encrypted frames for which ``keys:`` has no key (``NO_KEY``), or whose key does not match
    (``WRONG_KEY``), or a plain frame from a device that has a key."""


NO_KEY = "the frames are encrypted and keys: has no bind key for this address"
WRONG_KEY = "the bind key does not match (the frames do not decrypt with it)"


def service_uuid(uuid16: int) -> str:
    """The 128-bit form of a 16-bit service UUID, as bleak keys service data."""
    return f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class AdvertFormat:
    name: str  # as in the configuration's ``formats:``
    label: str  # names the family to people; begins the message of a frame that does not decode
    decoder: Callable[[bytes | None], Decoder]  # the decoder of one device, given its key
    service_uuids: frozenset[str] = frozenset()  # claims service data of these UUIDs ...
    company_ids: frozenset[int] = frozenset()  # ... or manufacturer data of these companies ...
    names: tuple[str, ...] = ()  # ... or an advertised name starting with one of these (any case) ...
    advertised_uuids: frozenset[str] = frozenset()  # ... or one of these service UUIDs advertised
    prefix: bytes = b""  # manufacturer data must also start with this
    keyed: bool = False  # frames may be encrypted with a key from ``keys:``
    per_device: bool = True  # the decoder keeps state per device (a parser instance)
    rssi: bool = True  # the RSSI is reported with what the device says
    library: str | None = None  # the Python distribution that decodes the family
    models: Callable[[], list[str]] = lambda: []  # the products the family's decoder knows
    _names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(n.lower() for n in self.names))

    def claims(self, adv: AdvertisementData) -> bool:
        """Whether ``adv`` carries a frame of this family."""
        if self.service_uuids and not self.service_uuids.isdisjoint(adv.service_data):
            return True
        if self.company_ids:
            for company, data in adv.manufacturer_data.items():
                if company in self.company_ids and data.startswith(self.prefix):
                    return True
        if self.names and adv.local_name and adv.local_name.lower().startswith(self._names):
            return True
        return bool(self.advertised_uuids) and not self.advertised_uuids.isdisjoint(adv.service_uuids)

    def patterns(self) -> list[tuple[int, int, bytes]]:
        """BlueZ's passive-scanning patterns (offset, AD type, bytes) that let this family's frames through."""
        out = [(0, SERVICE_DATA_UUID16, bytes.fromhex(u[4:8])[::-1]) for u in sorted(self.service_uuids)
               if u.endswith("-0000-1000-8000-00805f9b34fb")]  # fmt: skip
        out += [(0, MANUFACTURER_DATA, c.to_bytes(2, "little") + self.prefix) for c in sorted(self.company_ids)]
        out += [(0, COMPLETE_LOCAL_NAME, n.encode()) for n in self.names]
        out += [(0, COMPLETE_UUID128_LIST, bytes.fromhex(u.replace("-", ""))[::-1]) for u in sorted(self.advertised_uuids)]
        return out


def canonical(names: Iterable[str]) -> list[str]:
    """Family names with older spellings replaced, in the table's order."""
    wanted = {ALIASES.get(n, n) for n in names}
    return [n for n in NAMES if n in wanted]


def load(names: Iterable[str] = NAMES) -> tuple[AdvertFormat, ...]:
    """The families named, from their modules (which import their parsers)."""
    return tuple(importlib.import_module(MODULES[name], __package__).FORMAT for name in canonical(names))
