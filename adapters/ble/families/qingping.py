"""Qingping sensors (service data of UUID 0xFDCD), through qingping-ble."""

from __future__ import annotations

from qingping_ble import QingpingBluetoothDeviceData
from qingping_ble.parser import DEVICE_TYPES, SERVICE_DATA_UUID

from edged.adapters.ble import parsers
from edged.adapters.ble.formats import AdvertFormat

parsers.quiet("qingping_ble")


class _Parser(parsers.RssiByEdged, QingpingBluetoothDeviceData):
    """QingpingBluetoothDeviceData leaving the RSSI to edged."""


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(_Parser(), "Qingping", parsers.service_data(SERVICE_DATA_UUID), rssi=True)


def models() -> list[str]:
    return sorted({f"{d.name} ({d.model})" if d.name else d.model for d in DEVICE_TYPES.values()})


FORMAT = AdvertFormat("qingping", "Qingping", decoder, service_uuids=frozenset({SERVICE_DATA_UUID}),
                      library="qingping-ble", models=models)  # fmt: skip
