"""The table of device families: what claims an advertisement for each, that
the dispatcher decodes whatever the table holds, that a family's parser is
imported only when the family is enabled, and that a configuration is
checked against the table without loading bleak or a parser."""

from __future__ import annotations

import subprocess
import sys

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble import advert, formats
from edged.adapters.ble.config import BleConfig
from edged.adapters.ble.formats import AdvertFormat, Decoded
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

ADDRESS = "A4:C1:38:00:00:01"
DEVICE = BLEDevice(ADDRESS, None, {})


def adv(service: dict[str, bytes] | None = None, manufacturer: dict[int, bytes] | None = None,
        name: str | None = None) -> AdvertisementData:  # fmt: skip
    return AdvertisementData(name, manufacturer or {}, service or {}, list(service or {}), None, -70, ())


def test_each_family_is_claimed_by_its_published_identifiers():
    found = {f.name: f for f in formats.load()}
    assert list(found) == list(formats.NAMES)
    assert found["bthome"].patterns() == [(0, 0x16, b"\x1c\x18"), (0, 0x16, b"\x1e\x18"), (0, 0x16, b"\xd2\xfc")]
    assert found["atc"].patterns() == [(0, 0x16, b"\x1a\x18")]
    assert (0, 0x16, b"\x95\xfe") in found["xiaomi"].patterns()
    assert found["ruuvi"].patterns() == [(0, 0xFF, b"\x99\x04")]
    assert found["ibeacon"].patterns() == [(0, 0xFF, b"\x4c\x00\x02\x15")]  # Apple's company id, type 0x02, length 0x15
    assert found["qingping"].patterns() == [(0, 0x16, b"\xcd\xfd")]
    assert (0, 0x09, b"TP35") in found["thermopro"].patterns()
    assert found["govee"].claims(adv(manufacturer={0xEC88: b"\x00"}))
    assert found["thermopro"].claims(adv(manufacturer={61122: b"\x00"}, name="TP357S (2142)"))
    assert found["inkbird"].claims(adv(manufacturer={0x089C: b"\x00"}, name="sps"))
    assert not found["ibeacon"].claims(adv(manufacturer={0x004C: bytes.fromhex("1005031c")}))  # another Apple frame
    assert all(f.models() for f in found.values())


def _toy(device: BLEDevice, data: AdvertisementData, now: float) -> Decoded | None:
    frame = data.service_data[TOY_UUID]
    if frame[:1] == b"\x00":
        return None  # a frame of this UUID that says nothing
    if len(frame) != 2:
        raise ValueError(f"a toy frame has 2 bytes; got {len(frame)}")
    return Decoded(device.address.lower(), "Toy", frame, (Measurement("level", frame[1], "%", ValueType.INT),))


TOY_UUID = formats.service_uuid(0xFFF0)
TOY = AdvertFormat("toy", "Toy", lambda key: _toy, service_uuids=frozenset({TOY_UUID}), per_device=False)


def test_a_family_added_to_the_table_is_decoded_with_the_others():
    ruuvi_frame = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    adverts = advert.Adverts((*formats.load(), TOY))
    decoded = adverts.decode(DEVICE, adv({TOY_UUID: b"\x01\x2a"}, {0x0499: ruuvi_frame}))
    assert [d.model for d in decoded] == ["RuuviTag", "Toy"]
    assert decoded[1].measurements == (Measurement("level", 42, "%", ValueType.INT),)
    assert decoded[0].measurements[-1] == Measurement("rssi", -70, "dBm", ValueType.INT)  # the parser's, once

    alone = advert.Adverts((TOY,))
    assert [m.key for m in alone.decode(DEVICE, adv({TOY_UUID: b"\x01\x2a"}))[0].measurements] == ["level", "rssi"]
    assert alone.decode(DEVICE, adv({TOY_UUID: b"\x00"})) == []
    with pytest.raises(advert.AdvertError, match=r"^Toy: a toy frame has 2 bytes; got 3$"):
        alone.decode(DEVICE, adv({TOY_UUID: b"\x01\x02\x03"}))


def test_only_the_chosen_families_are_decoded():
    beacon = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
    frames = adv({formats.service_uuid(0xFCD2): bytes.fromhex("4002c409")}, {0x004C: beacon})
    assert [d.model for d in advert.Adverts(advert.chosen(["ibeacon"])).decode(DEVICE, frames)] == ["iBeacon"]
    both = advert.Adverts(advert.chosen(["ibeacon", "bthome"])).decode(DEVICE, frames)
    assert [d.model for d in both] == ["BTHome sensor", "iBeacon"]


def test_decoders_of_silent_devices_are_bounded():
    adverts = advert.Adverts(advert.chosen(["bthome"]), capacity=3)
    for n in range(10):
        adverts.decode(BLEDevice(f"A4:C1:38:00:00:{n:02X}", None, {}), adv({formats.service_uuid(0xFCD2): b"\x40\x02\xc4\x09"}))
    assert len(adverts) == 3


def test_the_configuration_takes_the_table_names_without_loading_bleak_or_a_parser():
    assert BleConfig.model_validate({"type": "ble"}).formats == list(formats.NAMES)
    probe = (
        "import sys, edged.adapters.ble.config; "
        "print([m for m in sys.modules if m.split('.')[0] in ('bleak', 'cryptography', 'bthome_ble', 'xiaomi_ble', "
        "'habluetooth', 'sensor_state_data') or m.startswith('edged.adapters.ble.families')])"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_family_is_imported_only_when_enabled():
    probe = (
        "import sys; from edged.adapters.ble import formats; formats.load(['ruuvi', 'ibeacon']); "
        "print(sorted(m for m in ('bthome_ble', 'xiaomi_ble', 'govee_ble', 'ruuvitag_ble') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['ruuvitag_ble']"
