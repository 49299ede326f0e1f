"""INKBIRD thermometers, hygrometers and BBQ probes (manufacturer data; told
apart by their advertised names), through inkbird-ble."""

from __future__ import annotations

from inkbird_ble import INKBIRDBluetoothDeviceData
from inkbird_ble.parser import (
    GENERIC_18_MANUFACTURER_ID,
    IAM_T1_MANUFACTURER_ID,
    IAM_T2_MANUFACTURER_ID,
    INKBIRD_NAMES,
    MODEL_INFO,
)

from edged.adapters.ble import parsers
from edged.adapters.ble.formats import AdvertFormat

NAMES = (*sorted(INKBIRD_NAMES), "ink@", "ibbq", "xbbq")
COMPANY_IDS = frozenset({GENERIC_18_MANUFACTURER_ID, IAM_T1_MANUFACTURER_ID, IAM_T2_MANUFACTURER_ID})

parsers.quiet("inkbird_ble")


class _Parser(parsers.RssiByEdged, INKBIRDBluetoothDeviceData):
    """INKBIRDBluetoothDeviceData leaving the RSSI to edged."""


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(_Parser(), "INKBIRD", parsers.manufacturer_data, rssi=True)


def models() -> list[str]:
    return sorted(str(model) for model in MODEL_INFO)


FORMAT = AdvertFormat("inkbird", "INKBIRD", decoder, company_ids=COMPANY_IDS, names=NAMES, library="inkbird-ble",
                      models=models)  # fmt: skip
