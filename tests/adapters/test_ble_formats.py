"""The table of advertisement formats: what each is recognised by, that the
dispatcher decodes whatever the table holds, and that a configuration is
checked against it without loading bleak or a decoder."""

from __future__ import annotations

import subprocess
import sys

import pytest
from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble import advert, formats
from edged.adapters.ble.config import BleConfig
from edged.adapters.ble.formats import AdvertFormat, Decoded
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

ADDRESS = "A4:C1:38:00:00:01"


def adv(service: dict[str, bytes] | None = None, manufacturer: dict[int, bytes] | None = None) -> AdvertisementData:
    return AdvertisementData(None, manufacturer or {}, service or {}, list(service or {}), None, -70, ())


def test_each_format_is_recognised_by_its_published_identifier():
    found = {f.name: (f.service_uuid, f.company_id, f.ad_type, f.pattern.hex()) for f in formats.load()}
    assert list(found) == list(formats.NAMES)
    assert found == {
        "bthome": ("0000fcd2-0000-1000-8000-00805f9b34fb", None, 0x16, "d2fc"),
        "atc": ("0000181a-0000-1000-8000-00805f9b34fb", None, 0x16, "1a18"),
        "mibeacon": ("0000fe95-0000-1000-8000-00805f9b34fb", None, 0x16, "95fe"),
        "ruuvi": (None, 0x0499, 0xFF, "9904"),
        "ibeacon": (None, 0x004C, 0xFF, "4c000215"),  # Apple's company id, then type 0x02 and length 0x15
    }


def _toy(data: bytes, address: str, rssi: int, key: bytes | None) -> Decoded | None:
    if data[:1] == b"\x00":
        return None  # a frame of this UUID that says nothing
    if len(data) != 2:
        raise ValueError(f"a toy frame has 2 bytes; got {len(data)}")
    return Decoded(address.lower(), "Toy", data, (Measurement("level", data[1], "%", ValueType.INT),))


TOY = AdvertFormat.service_data("toy", "Toy", 0xFFF0, _toy)


def test_a_format_added_to_the_table_is_decoded_with_the_others():
    ruuvi_frame = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    decoded = advert.decode(ADDRESS, adv({TOY.service_uuid: b"\x01\x2a"}, {0x0499: ruuvi_frame}), (*advert.ALL_FORMATS, TOY))
    assert [d.model for d in decoded] == ["RuuviTag", "Toy"]
    assert decoded[1].measurements == (Measurement("level", 42, "%", ValueType.INT),)
    assert decoded[0].measurements[-1] == Measurement("rssi", -70, "dBm", ValueType.INT)  # added once, to the first

    alone = advert.decode(ADDRESS, adv({TOY.service_uuid: b"\x01\x2a"}), (TOY,))
    assert [m.key for m in alone[0].measurements] == ["level", "rssi"]
    assert advert.decode(ADDRESS, adv({TOY.service_uuid: b"\x00"}), (TOY,)) == []
    with pytest.raises(advert.AdvertError, match=r"^Toy: a toy frame has 2 bytes; got 3$"):
        advert.decode(ADDRESS, adv({TOY.service_uuid: b"\x01\x02\x03"}), (TOY,))


def test_only_the_chosen_formats_are_decoded():
    beacon = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
    frames = adv({formats.service_uuid(0xFCD2): bytes.fromhex("4002c409")}, {0x004C: beacon})
    assert [d.model for d in advert.decode(ADDRESS, frames, advert.chosen(["ibeacon"]))] == ["iBeacon"]
    assert [d.model for d in advert.decode(ADDRESS, frames, advert.chosen(["ibeacon", "bthome"]))] == ["BTHome v2", "iBeacon"]


def test_the_configuration_takes_the_table_names_without_loading_bleak_or_a_decoder():
    assert BleConfig.model_validate({"type": "ble"}).formats == list(formats.NAMES)
    probe = (
        "import sys, edged.adapters.ble.config; "
        "print([m for m in sys.modules if m.split('.')[0] in ('bleak', 'cryptography') "
        "or m in ('edged.adapters.ble.advert', 'edged.adapters.ble.bthome')])"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
