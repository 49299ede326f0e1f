"""BTHome v1 and v2 (service data of UUIDs 0xFCD2, 0x181C and 0x181E), plain or
AES-CCM encrypted with the device's bind key, through bthome-ble: Shelly BLU
devices, b-parasite, pvvx and ATC firmware in BTHome mode, ESPHome and DIY
sensors."""

from __future__ import annotations

from typing import Any

from bthome_ble import BTHomeBluetoothDeviceData
from bthome_ble.const import MEAS_TYPES
from bthome_ble.parser import EncryptionScheme

from edged.adapters.ble import formats, parsers
from edged.adapters.ble.formats import AdvertFormat, service_uuid

UUIDS = frozenset({service_uuid(0xFCD2), service_uuid(0x181C), service_uuid(0x181E)})
V2_ENCRYPTED = 0x41  # device information: version 2, encrypted (bit 0)

parsers.quiet("bthome_ble")


def counter(frame: bytes) -> int | None:
    """The counter of an encrypted frame (the 4 bytes before the MIC); None when it is not encrypted."""
    if len(frame) >= 9 and (frame[0] & 0xE1) == V2_ENCRYPTED:
        return int.from_bytes(frame[-8:-4], "little")
    return None


def problem(parser: Any, frame: bytes) -> str | None:
    if parser.downgrade_detected:
        return "an unencrypted frame from a device that has a bind key was ignored"
    if parser.encryption_scheme is not EncryptionScheme.BTHOME_BINDKEY:
        return None
    if parser.bindkey is None:
        return formats.NO_KEY
    if parser.decryption_failed:
        return formats.WRONG_KEY
    return None


class _Parser(parsers.RssiByEdged, BTHomeBluetoothDeviceData):
    """BTHomeBluetoothDeviceData leaving the RSSI to edged."""


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(_Parser(key), "BTHome", parsers.first_service_data(UUIDS),
                                 counter, problem, rssi=True)  # fmt: skip


def models() -> list[str]:
    kinds = sorted({str(getattr(m.meas_format, "device_class", m.meas_format)) for m in MEAS_TYPES.values()
                    if m.meas_format is not None})  # fmt: skip
    return [f"any BTHome v1 or v2 device; objects: {', '.join(kinds)}"]


FORMAT = AdvertFormat("bthome", "BTHome", decoder, service_uuids=UUIDS, keyed=True, library="bthome-ble",
                      models=models)  # fmt: skip
