"""The advertisement formats the BLE adapter decodes: one table.

Each format is a module of this package named as in ``NAMES`` that exports
``FORMAT``, an ``AdvertFormat``: how its frames are recognised (the
service-data UUID or the manufacturer's company id), what BlueZ matches them
by in passive scanning, and the function that turns a frame into a
``Decoded``. Adding a format is adding its module and its name here.

This module imports neither bleak nor the decoders, so that a configuration
is checked against ``NAMES`` at no cost.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from edged.adapters.ble.measurement import Measurement

# The formats, in the order an advertisement's frames are decoded in.
NAMES = ("bthome", "atc", "mibeacon", "ruuvi", "ibeacon")

SERVICE_DATA_UUID16 = 0x16  # advertising data types (Bluetooth Assigned Numbers 2.3)
MANUFACTURER_DATA = 0xFF


class Decoded(NamedTuple):
    """What one advertisement said about one device."""

    native_id: str  # the address (lower case), or ibeacon-<uuid>-<major>-<minor>
    model: str
    payload: bytes  # the frame itself: equal payloads are duplicates
    measurements: tuple[Measurement, ...]
    counter: int | None = None  # BTHome encryption counter (replay protection)


# (frame, sender's address in upper case, RSSI, the sender's key if the format takes one)
# -> what it says, or None for a frame of the same source that is not this format's.
# A frame of this format that does not decode raises ValueError saying why.
Decode = Callable[[bytes, str, int, bytes | None], Decoded | None]


def service_uuid(uuid16: int) -> str:
    """The 128-bit form of a 16-bit service UUID, as bleak keys service data."""
    return f"0000{uuid16:04x}-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class AdvertFormat:
    name: str  # as in the configuration's ``formats:``
    label: str  # begins the message of a frame that does not decode
    decode: Decode
    service_uuid: str | None = None  # frames are the service data of this UUID ...
    company_id: int | None = None  # ... or the manufacturer data of this company
    ad_type: int = SERVICE_DATA_UUID16  # for passive scanning: the frames' AD type ...
    pattern: bytes = b""  # ... and the bytes they start with (UUID or company id, little-endian)
    keyed: bool = False  # decode takes the sender's key (bthome_keys)
    rssi: bool = True  # the adapter adds the advertisement's RSSI to what it says

    @classmethod
    def service_data(cls, name: str, label: str, uuid16: int, decode: Decode, *, keyed: bool = False) -> AdvertFormat:
        """A format carried in the service data of a 16-bit UUID."""
        return cls(name, label, decode, service_uuid=service_uuid(uuid16), pattern=uuid16.to_bytes(2, "little"),
                   keyed=keyed)  # fmt: skip

    @classmethod
    def manufacturer_data(
        cls, name: str, label: str, company_id: int, decode: Decode, *, prefix: bytes = b"", rssi: bool = True
    ) -> AdvertFormat:
        """A format carried in the manufacturer data of ``company_id``, starting with ``prefix``."""
        return cls(name, label, decode, company_id=company_id, ad_type=MANUFACTURER_DATA,
                   pattern=company_id.to_bytes(2, "little") + prefix, rssi=rssi)  # fmt: skip


def load(names: Iterable[str] = NAMES) -> tuple[AdvertFormat, ...]:
    """The formats named, from their modules (which import their decoders' libraries)."""
    return tuple(importlib.import_module(f"{__package__}.{name}").FORMAT for name in names)
