"""Govee thermometers, hygrometers, meat probes, motion and button sensors
(manufacturer data, named GV..., Govee_... or ihoment_...), through govee-ble."""

from __future__ import annotations

import inspect
import re

from govee_ble import GoveeBluetoothDeviceData, parser

from edged.adapters.ble import parsers
from edged.adapters.ble.formats import AdvertFormat

# Company ids Govee devices put their readings under (govee-ble tells models apart by them and by length).
COMPANY_IDS = frozenset({
    0xEC88, 0x0001, 0x8801, 0x8803, 0x8843, 0xF861, 0x388A, 0xEA42, 0xAAA2, 0xD14B, 0x2730,
    0x67DD, 0xE02F, 0xF79F, 0x1B36, 0x4A32, 0x0332, 0x4C32, 0xAC63, 0x3022,
})  # fmt: skip
NAMES = ("GV", "Govee", "ihoment", "Minger", "B5178")

parsers.quiet("govee_ble")


def decoder(key: bytes | None) -> parsers.ParserDecoder:
    return parsers.ParserDecoder(GoveeBluetoothDeviceData(), "Govee", parsers.manufacturer_data)


def models() -> list[str]:
    return sorted(set(re.findall(r'set_device_type\(\s*"([^"]+)"', inspect.getsource(parser))))


FORMAT = AdvertFormat("govee", "Govee", decoder, company_ids=COMPANY_IDS, names=NAMES, library="govee-ble",
                      models=models)  # fmt: skip
