"""ThermoPro thermometers, hygrometers and meat probes (TP35x, TP39x, TP96x,
TP97x: manufacturer data, told apart by their names), through thermopro-ble."""

from __future__ import annotations

from thermopro_ble import ThermoProBluetoothDeviceData

from edged.adapters.ble import parsers
from edged.adapters.ble.formats import AdvertFormat

NAMES = ("TP35", "TP39", "TP96", "TP97")

parsers.quiet("thermopro_ble")


class _Parser(parsers.RssiByEdged, ThermoProBluetoothDeviceData):
    """ThermoProBluetoothDeviceData leaving the RSSI to edged."""


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(_Parser(), "ThermoPro", parsers.manufacturer_data, rssi=True)


def models() -> list[str]:
    return [f"{name}x (any model named {name}...)" for name in NAMES]


FORMAT = AdvertFormat("thermopro", "ThermoPro", decoder, names=NAMES, library="thermopro-ble", models=models)
