"""Each family's decoder against frames real devices sent, with the values
they reported as published alongside: BTHome v2 examples from bthome.io (its
object table, a real sensor frame, its encryption example with its key),
RuuviTag format 5 test vectors from Ruuvi's documentation, Xiaomi MiBeacon
frames of real sensors (an encrypted LYWSD03MMC with its published bind
key), and the frames of Govee, INKBIRD, ThermoPro, SensorPush and
Qingping sensors published with their parsers' test suites; the
ATC_MiThermometer layouts, iBeacon and the GATT value codec too. Every frame
goes through ``Adverts``, as the adapter's do."""

from __future__ import annotations

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from edged.adapters.ble import advert, atc, codec, formats, ibeacon
from edged.adapters.ble.formats import NAMES, service_uuid
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

BTHOME = service_uuid(0xFCD2)
MIBEACON = service_uuid(0xFE95)


def decode(address: str, *, name: str | None = None, service: dict[str, bytes] | None = None,
           manufacturer: dict[int, bytes] | None = None, keys: dict[str, str] | None = None,
           adverts: advert.Adverts | None = None) -> list[advert.Decoded]:  # fmt: skip
    if adverts is None:
        adverts = advert.Adverts(advert.chosen(NAMES), {a: bytes.fromhex(k) for a, k in (keys or {}).items()})
    adv = AdvertisementData(name, manufacturer or {}, service or {}, list(service or {}), None, -60, ())
    return adverts.decode(BLEDevice(address, None, {}), adv, 1.0)


def said(frames: list[advert.Decoded]) -> dict[str, object]:
    return {m.key: m.value for frame in frames for m in frame.measurements if m.key != "rssi"}


def units(frames: list[advert.Decoded]) -> dict[str, object]:
    return {m.key: m.unit for frame in frames for m in frame.measurements}


# -- BTHome v2 ---------------------------------------------------------------


def test_bthome_sensor_frame():
    # A real sensor's service data: v2 unencrypted; packet id 63, battery 94 %, 21.78 Cel, 60.60 %RH, 2.947 V.
    frames = decode("A4:C1:38:00:00:01", name="SBHT-003C", service={BTHOME: bytes.fromhex("40003f015e02820803ac170c830b")})
    assert said(frames) == {"battery": 94, "temperature": 21.78, "humidity": 60.6, "voltage": 2.947}
    assert units(frames) == {"battery": "%EL", "temperature": "Cel", "humidity": "%RH", "voltage": "V", "rssi": "dBm"}
    assert (frames[0].model, frames[0].manufacturer) == ("BLU H&T", "Shelly")


@pytest.mark.parametrize(
    ("objects", "key", "value", "unit"),
    [  # examples from the object table at bthome.io/format
        ("0161", "battery", 97, "%EL"),
        ("12E204", "carbon_dioxide", 1250, "ppm"),
        ("434E34", "current", 13.39, "A"),
        ("08CA06", "dew_point", 17.38, "Cel"),
        ("424E3400", "duration", 13.39, "s"),
        ("0A138A14", "energy", 1346.067, "kWh"),
        ("4D12138A14", "energy", 344593.17, "kWh"),
        ("03BF13", "humidity", 50.55, "%RH"),
        ("2E23", "humidity", 35, "%RH"),
        ("05138A14", "illuminance", 13460.67, "lx"),
        ("0B021B00", "power", 69.14, "W"),
        ("04138A01", "pressure", 100883, "Pa"),  # 1008.83 hPa, reported in Pa
        ("02CA09", "temperature", 25.06, "Cel"),
        ("45FE00", "temperature", 25.4, "Cel"),
        ("5AEAEA", "count", -5398, None),
        ("5D02EA", "current", -5.63, "A"),
        ("3A01", "button", "press", None),
        ("3C0103", "dimmer", "rotate_left 3", None),
        ("2101", "motion", True, None),
        ("1A00", "door", False, None),
        ("530454657374", "text", "Test", None),
    ],
)
def test_bthome_objects(objects, key, value, unit):
    frames = decode("A4:C1:38:00:00:01", service={BTHOME: bytes.fromhex("40" + objects)})
    assert said(frames) == {key: value}
    assert units(frames)[key] == unit


def test_bthome_repeated_object_is_numbered_and_unknown_object_keeps_what_came_before():
    assert said(decode("A4:C1:38:00:00:01", service={BTHOME: bytes.fromhex("40" + "02CA09" + "02C409")})) == {
        "temperature_1": 25.06, "temperature_2": 25.0}
    assert said(decode("A4:C1:38:00:00:01", service={BTHOME: bytes.fromhex("40" + "02CA09" + "EE0102")})) == {
        "temperature": 25.06}


# bthome.io/encryption: objects 02CA09 03BF13, key 231d39c1..., MAC 5448E68F80A5,
# counter bytes 00112233, device information 0x41; published result below.
ENC_KEY = "231d39c1d7cc1ab1aee224cd096db932"
ENC_MAC = "54:48:E6:8F:80:A5"
ENC_FRAME = bytes.fromhex("41" + "a47266c95f73" + "00112233" + "78237214")


def test_bthome_encrypted_example_decrypts_with_its_key():
    frames = decode(ENC_MAC, service={BTHOME: ENC_FRAME}, keys={ENC_MAC: ENC_KEY})
    assert said(frames) == {"temperature": 25.06, "humidity": 50.55}


def test_bthome_encryption_of_the_simulated_sensor_matches_the_published_frame():
    from edged.adapters.ble import simulator

    objects = simulator.bthome_objects([(0x02, 25.06), (0x03, 50.55)])
    assert simulator.bthome_encrypted(objects, ENC_MAC, bytes.fromhex(ENC_KEY), 0x33221100) == ENC_FRAME


def test_bthome_wrong_missing_key_and_replay_are_refused():
    with pytest.raises(advert.AdvertError, match="keys: has no bind key") as info:
        decode(ENC_MAC, service={BTHOME: ENC_FRAME})
    assert isinstance(info.value.__cause__, advert.NeedsKey)
    with pytest.raises(advert.AdvertError, match="bind key does not match"):
        decode(ENC_MAC, service={BTHOME: ENC_FRAME}, keys={ENC_MAC: "00" * 16})
    with pytest.raises(advert.AdvertError, match="bind key does not match"):  # the MAC is part of the nonce
        decode("54:48:E6:8F:80:A6", service={BTHOME: ENC_FRAME}, keys={"54:48:E6:8F:80:A6": ENC_KEY})
    adverts = advert.Adverts(advert.chosen(["bthome"]), {ENC_MAC: bytes.fromhex(ENC_KEY)})
    assert said(decode(ENC_MAC, service={BTHOME: ENC_FRAME}, adverts=adverts))
    with pytest.raises(advert.AdvertError, match="replay") as info:
        decode(ENC_MAC, service={BTHOME: ENC_FRAME}, adverts=adverts)
    assert isinstance(info.value.__cause__, advert.Replay)
    adverts.forget(ENC_MAC)  # silent long enough to have restarted
    assert said(decode(ENC_MAC, service={BTHOME: ENC_FRAME}, adverts=adverts))


# -- Xiaomi MiBeacon (0xFE95) --------------------------------------------------


@pytest.mark.parametrize(
    ("address", "raw", "model", "expected"),
    [  # frames of real sensors with the values they reported (MAC inside the frame, reversed)
        ("58:2D:34:33:AA:DF", "5020aa0137dfaa33342d580d100404016602", "LYWSDCGQ", {"temperature": 26.0, "humidity": 61.4}),
        ("58:2D:34:33:AA:DF", "5020aa018ddfaa33342d580410021201", "LYWSDCGQ", {"temperature": 27.4}),
        ("C4:7C:8D:65:B6:63", "712098004a63b6658d7cc40d071003f32600", "HHCCJCY01", {"illuminance": 9971}),
        ("C4:7C:8D:65:B6:63", "712098005763b6658d7cc40d0810011e", "HHCCJCY01", {"moisture": 30}),
    ],
)
def test_mibeacon_frames(address, raw, model, expected):
    frames = decode(address, service={MIBEACON: bytes.fromhex(raw)})
    assert said(frames) == expected
    assert (frames[0].model, frames[0].manufacturer) == (model, "Xiaomi")


# A stock LYWSD03MMC (MiBeacon v5, encrypted) and its bind key, as published with xiaomi-ble's tests.
LYWSD03MMC = "A4:C1:38:02:83:F4"
LYWSD03MMC_KEY = "e9ea895fac7cca6d30532432a516f3a8"
LYWSD03MMC_FRAME = bytes.fromhex("58585b0550f4830238c1a495ef58763c26000097e2abb5")


def test_encrypted_mibeacon_decrypts_with_its_bind_key():
    frames = decode(LYWSD03MMC, service={MIBEACON: LYWSD03MMC_FRAME}, keys={LYWSD03MMC: LYWSD03MMC_KEY})
    assert said(frames) == {"humidity": 46.0}
    assert units(frames)["humidity"] == "%RH" and frames[0].model == "LYWSD03MMC"


def test_encrypted_mibeacon_without_or_with_a_wrong_key_says_so():
    with pytest.raises(advert.AdvertError, match=r"^Xiaomi: the frames are encrypted and keys: has no bind key"):
        decode(LYWSD03MMC, service={MIBEACON: LYWSD03MMC_FRAME})
    with pytest.raises(advert.AdvertError, match="bind key does not match"):
        decode(LYWSD03MMC, service={MIBEACON: LYWSD03MMC_FRAME}, keys={LYWSD03MMC: "11" * 16})


# -- RuuviTag data format 5: the test vectors of docs.ruuvi.com ---------------


def test_ruuvi_valid_vector():
    frames = decode("CB:B8:33:4C:88:4F", manufacturer={0x0499: bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")})
    values = said(frames)
    assert {k: values[k] for k in ("temperature", "humidity", "pressure", "voltage", "movement_counter")} == {
        "temperature": 24.3, "humidity": 53.49, "pressure": 100044, "voltage": 2977, "movement_counter": 66}
    assert values["acceleration_z"] == pytest.approx(1.036 * 9.80665, abs=0.01)  # reported in m/s2
    assert units(frames)["pressure"] == "Pa" and units(frames)["voltage"] == "mV"
    assert (frames[0].model, frames[0].manufacturer) == ("RuuviTag", "Ruuvi Innovations Ltd.")


def test_ruuvi_minimum_vector():
    values = said(decode("CB:B8:33:4C:88:4F", manufacturer={0x0499: bytes.fromhex("058001000000008001800180010000000000CBB8334C884F")}))
    assert {k: values[k] for k in ("temperature", "humidity", "pressure", "voltage")} == {
        "temperature": -163.84, "humidity": 0.0, "pressure": 50000, "voltage": 1600}  # -163.835, to 0.01


# -- Govee, INKBIRD, ThermoPro ---------------------------------------------------


@pytest.mark.parametrize(
    ("address", "name", "manufacturer", "model", "expected"),
    [
        ("A4:C1:38:DD:DB:F8", "GVH5075_DBF8", {0xEC88: "00034db26400"}, "H5075",
         {"temperature": 21.6, "humidity": 49.8, "battery": 100}),
        ("49:42:07:00:0C:B2", "sps", {0x089C: "f41000ba4e6408"}, "IBS-TH",
         {"temperature": 22.04, "humidity": 43.4, "battery": 100}),
        ("AA:BB:CC:DD:EE:FF", "TP357S (2142)", {61122: "0029220b01"}, "TP357S",
         {"temperature": 23.8, "humidity": 41.0, "battery": 100}),
    ],
)
def test_manufacturer_data_families(address, name, manufacturer, model, expected):
    frames = decode(address, name=name, manufacturer={c: bytes.fromhex(d) for c, d in manufacturer.items()})
    assert said(frames) == expected
    assert frames[0].model == model
    assert units(frames) == {"temperature": "Cel", "humidity": "%RH", "battery": "%EL", "rssi": "dBm"}


def test_sensorpush_found_by_its_service_uuid_and_name():
    adverts = advert.Adverts(advert.chosen(NAMES))
    adv = AdvertisementData("SensorPush HT.w 0CA1", {39428: bytes.fromhex("c9a546")}, {},
                            ["ef090000-11d6-42ba-93b8-9dd7ec090ab0"], None, -60, ())  # fmt: skip
    frames = adverts.decode(BLEDevice("AA:BB:CC:DD:EE:F1", None, {}), adv, 1.0)
    assert said(frames) == {"temperature": 20.53, "humidity": 44.9}
    assert (frames[0].model, frames[0].manufacturer) == ("HT.w", "SensorPush")


def test_qingping_motion_and_light_sensor():
    frame = bytes.fromhex("4812cdd560342d580804000d00000f01ee")  # a CGPR1's frame: no motion
    frames = decode("AA:BB:CC:DD:EE:FF", name="Qingping Motion & Light", service={service_uuid(0xFDCD): frame})
    assert said(frames) == {"motion": False}
    assert (frames[0].model, frames[0].manufacturer) == ("CGPR1", "Qingping")


# -- ATC_MiThermometer (0x181A) ------------------------------------------------


def atc_values(raw: str) -> dict[str, object]:
    return {m.key: m.value for m in atc.decode(bytes.fromhex(raw)).measurements}


def test_atc1441_frames():
    frame = atc.decode(bytes.fromhex("a4c138d5d49801453e510b7b62"))
    assert (frame.layout, frame.mac) == ("atc1441", "A4:C1:38:D5:D4:98")
    assert atc_values("a4c138d5d49801453e510b7b62") == {
        "temperature": 32.5, "humidity": 62.0, "battery": 81, "battery_voltage": 2939,
    }
    assert atc_values("a4c138d5d498ffd33e510b7b62")["temperature"] == -4.5  # below zero


def test_pvvx_custom_frame():
    frame = atc.decode(bytes.fromhex("5601cf38c1a44008bd13470c64cc0f"))
    assert (frame.layout, frame.mac) == ("pvvx", "A4:C1:38:CF:01:56")  # sent reversed
    assert atc_values("5601cf38c1a44008bd13470c64cc0f") == {
        "temperature": 21.12, "humidity": 50.53, "battery": 100, "battery_voltage": 3143,
    }
    assert atc.encode_pvvx("A4:C1:38:CF:01:56", 21.12, 50.53, 3143, 100, 0xCC, flags=0x0F).hex() == "5601cf38c1a44008bd13470c64cc0f"


def test_atc_other_layouts_are_errors():
    with pytest.raises(atc.AtcError, match="11 bytes"):  # pvvx's encrypted layout
        atc.decode(bytes.fromhex("23ef56583dd42050fe8e4d"))


# -- iBeacon -------------------------------------------------------------------


def test_ibeacon_frame():
    data = bytes.fromhex("0215" + "e2c56db5dffb48d2b060d0f5a71096e0" + "0001" + "0002" + "c5")
    beacon = ibeacon.decode(data)
    assert beacon == ibeacon.IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)
    assert ibeacon.encode(beacon) == data
    assert ibeacon.decode(bytes.fromhex("1005031c")) is None  # another Apple frame
    assert ibeacon.distance(-59, -59) == 1.0


# -- GATT values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("decoder", "hexdata", "scale", "value"),
    [
        ("int8", "ff", 1, -1),
        ("uint8", "ff", 1, 255),
        ("int16_le", "1408", 0.01, 20.68),
        ("int16_be", "fff6", 0.1, -1.0),
        ("uint16_le", "e803", 1, 1000),
        ("uint16_be", "03e8", 1, 1000),
        ("int32_le", "feffffff", 1, -2),
        ("uint32_be", "00010000", 0.001, 65.536),
        ("float32_le", "0000a041", 1, 20.0),
        ("float32_be", "41a00000", 1, 20.0),
        ("utf8", "48656c6c6f00", 1, "Hello"),
        ("raw", "01ff", 1, "01ff"),
    ],
)
def test_codec_decodes(decoder, hexdata, scale, value):
    assert codec.decode(decoder, bytes.fromhex(hexdata), scale) == value


def test_codec_encodes_what_it_decodes_and_refuses_what_does_not_fit():
    assert codec.encode("int16_le", 20.68, 0.01) == bytes.fromhex("1408")
    assert codec.decode("int16_le", codec.encode("int16_le", 22.5, 0.01), 0.01) == 22.5
    with pytest.raises(ValueError, match="out of range for uint8"):
        codec.encode("uint8", 300)
    with pytest.raises(ValueError, match="expected a number"):
        codec.encode("uint16_le", "warm")
    with pytest.raises(ValueError, match="needs 2 bytes"):
        codec.decode("int16_le", b"\x01")


# -- the RSSI: the parsers leave it to edged -------------------------------------


RSSI_FRAMES = [  # family, address, advertised name, service data, manufacturer data (published frames above)
    ("bthome", "A4:C1:38:00:00:01", "SBHT-003C", {BTHOME: "40003f015e02820803ac170c830b"}, {}),
    ("xiaomi", "58:2D:34:33:AA:DF", None, {MIBEACON: "5020aa0137dfaa33342d580d100404016602"}, {}),
    ("ruuvi", "CB:B8:33:4C:88:4F", None, {}, {0x0499: "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"}),
    ("inkbird", "49:42:07:00:0C:B2", "sps", {}, {0x089C: "f41000ba4e6408"}),
    ("thermopro", "AA:BB:CC:DD:EE:FF", "TP357S (2142)", {}, {61122: "0029220b01"}),
    ("qingping", "AA:BB:CC:DD:EE:FF", "Qingping Motion & Light", {service_uuid(0xFDCD): "4812cdd560342d580804000d00000f01ee"}, {}),
    ("govee", "A4:C1:38:DD:DB:F8", "GVH5075_DBF8", {}, {0xEC88: "00034db26400"}),  # its parser reports it
]


@pytest.mark.parametrize(("family", "address", "name", "service", "manufacturer"), RSSI_FRAMES)
def test_the_rssi_is_reported_once_after_what_the_frame_said(family, address, name, service, manufacturer):
    (kind,) = formats.load([family])
    decoder = kind.decoder(None)
    adv = AdvertisementData(name, {c: bytes.fromhex(d) for c, d in manufacturer.items()},
                            {u: bytes.fromhex(d) for u, d in service.items()}, list(service), None, -71, ())  # fmt: skip
    decoded = decoder(BLEDevice(address, None, {}), adv, 1.0)
    assert decoded is not None
    assert [m for m in decoded.measurements if m.key == "rssi"] == [Measurement("rssi", -71, "dBm", ValueType.INT)]
    assert decoded.measurements[-1].key == "rssi"
    # The parser made no signal-strength sensor of its own (one sensor less an update): if a new version of
    # the parser reported it another way, this fails rather than the RSSI being reported twice.
    parser_keys = {key.key for key in decoder._parser.descriptions}
    assert ("signal_strength" in parser_keys) == (family == "govee")
