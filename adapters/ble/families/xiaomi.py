"""Xiaomi MiBeacon (service data of UUID 0xFE95; v2 to v5, plain or encrypted
with the device's bind key), the HHCCJCY10 plant sensor (0xFD50) and Xiaomi
scales (0x181D, 0x181B), through xiaomi-ble."""

from __future__ import annotations

from typing import Any

from xiaomi_ble import XiaomiBluetoothDeviceData
from xiaomi_ble.devices import DEVICE_TYPES
from xiaomi_ble.parser import EncryptionScheme

from edged.adapters.ble import formats, parsers
from edged.adapters.ble.formats import AdvertFormat, service_uuid

MIBEACON = service_uuid(0xFE95)
UUIDS = frozenset({MIBEACON, service_uuid(0xFD50), service_uuid(0x181D), service_uuid(0x181B)})
_ENCRYPTED, _OBJECT = 0x08, 0x40

parsers.quiet("xiaomi_ble")


def counter(frame: bytes) -> int | None:
    """The counter of an encrypted MiBeacon frame (frame counter and extended counter); None otherwise."""
    if len(frame) < 12 or not frame[0] & _ENCRYPTED or not frame[0] & _OBJECT:
        return None
    extended = frame[-7:-4] if frame[1] >> 4 >= 4 else frame[-4:-1]
    return int.from_bytes(extended, "little") << 8 | frame[4]


def problem(parser: Any, frame: bytes) -> str | None:
    if parser.encryption_scheme is EncryptionScheme.NONE:
        return None
    if not parser.bindkey:
        return formats.NO_KEY
    if parser.decryption_failed or not parser.bindkey_verified:
        return formats.WRONG_KEY
    return None


class _Parser(parsers.RssiByEdged, XiaomiBluetoothDeviceData):
    """XiaomiBluetoothDeviceData leaving the RSSI to edged."""


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(_Parser(key), "Xiaomi", parsers.first_service_data(UUIDS),
                                 counter, problem, rssi=True)  # fmt: skip


def models() -> list[str]:
    return sorted({f"{entry.name} ({entry.model})" for entry in DEVICE_TYPES.values()})


FORMAT = AdvertFormat("xiaomi", "Xiaomi", decoder, service_uuids=UUIDS, keyed=True, library="xiaomi-ble",
                      models=models)  # fmt: skip
