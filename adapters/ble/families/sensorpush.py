"""SensorPush HT1, HT.w, HTP.xw and TC.x sensors (manufacturer data, found by
their name or their service UUIDs), through sensorpush-ble."""

from __future__ import annotations

from sensorpush_ble import SensorPushBluetoothDeviceData
from sensorpush_ble.parser import (
    LOCAL_NAMES,
    SENSORPUSH_MANUFACTURER_DATA_LEN,
    SENSORPUSH_SERVICE_UUID_HT1,
    SENSORPUSH_SERVICE_UUID_V2,
)

from edged.adapters.ble import parsers
from edged.adapters.ble.formats import AdvertFormat

parsers.quiet("sensorpush_ble")


class _Parser(parsers.RssiByEdged, SensorPushBluetoothDeviceData):
    """SensorPushBluetoothDeviceData leaving the RSSI to edged."""


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(_Parser(), "SensorPush", parsers.manufacturer_data, rssi=True)


def models() -> list[str]:
    return sorted({"HT1", *LOCAL_NAMES.values(), *SENSORPUSH_MANUFACTURER_DATA_LEN.values()})


FORMAT = AdvertFormat("sensorpush", "SensorPush", decoder, names=("SensorPush",),
                      advertised_uuids=frozenset({SENSORPUSH_SERVICE_UUID_HT1, SENSORPUSH_SERVICE_UUID_V2}),
                      library="sensorpush-ble", models=models)  # fmt: skip
