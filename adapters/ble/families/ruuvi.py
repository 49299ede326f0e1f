"""RuuviTag and Ruuvi Air (manufacturer data of company 0x0499), data formats
3, 5, 6 and E1, through ruuvitag-ble."""

from __future__ import annotations

from ruuvitag_ble import RuuvitagBluetoothDeviceData
from ruuvitag_ble.parser import decoder_classes

from edged.adapters.ble import parsers
from edged.adapters.ble.formats import AdvertFormat

COMPANY_ID = 0x0499

parsers.quiet("ruuvitag_ble")


class _Parser(parsers.RssiByEdged, RuuvitagBluetoothDeviceData):
    """RuuvitagBluetoothDeviceData leaving the RSSI to edged."""


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(_Parser(), "RuuviTag",
                                 lambda adv: adv.manufacturer_data.get(COMPANY_ID, b""), rssi=True)  # fmt: skip


def models() -> list[str]:
    return [f"data format {kind:X} (RuuviTag, Ruuvi Air)" for kind in sorted(decoder_classes)]


FORMAT = AdvertFormat("ruuvi", "Ruuvi", decoder, company_ids=frozenset({COMPANY_ID}), library="ruuvitag-ble",
                      models=models)  # fmt: skip
