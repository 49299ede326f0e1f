"""The BLE frame decoders against published frames: BTHome v2 examples from
bthome.io (including its encryption example), RuuviTag format 5 test
vectors from Ruuvi's documentation, ATC_MiThermometer and Xiaomi MiBeacon
frames of real sensors (as published with their decoded values in the
Theengs decoder's test suite), iBeacon, and the GATT value codec."""

from __future__ import annotations

import pytest

from edged.adapters.ble import atc, bthome, codec, ibeacon, mibeacon, ruuvi

# -- BTHome v2 ---------------------------------------------------------------


def values(packet: bthome.Packet) -> dict[str, object]:
    return {m.key: m.value for m in packet.measurements}


def test_bthome_sensor_frame():
    # A real sensor's service data (discussed on bthome-ble's issue tracker, decoded by bthome.io/format):
    # 40 = v2 unencrypted; packet id 63, battery 94 %, 21.78 Cel, 60.60 %RH, 2.947 V.
    packet = bthome.decode(bytes.fromhex("40003f015e02820803ac170c830b"), "A4:C1:38:00:00:01")
    assert values(packet) == {"packet_id": 63, "battery": 94, "temperature": 21.78, "humidity": 60.6, "voltage": 2.947}
    assert packet.packet_id == 63 and not packet.encrypted and not packet.truncated
    units = {m.key: m.unit for m in packet.measurements}
    assert units["temperature"] == "Cel" and units["humidity"] == "%RH" and units["battery"] == "%EL"


@pytest.mark.parametrize(
    ("objects", "key", "value"),
    [  # examples from the object table at bthome.io/format
        ("0161", "battery", 97),
        ("12E204", "co2", 1250),
        ("434E34", "current", 13.39),
        ("08CA06", "dewpoint", 17.38),
        ("424E3400", "duration", 13.39),
        ("0A138A14", "energy", 1346.067),
        ("4D12138A14", "energy", 344593.17),
        ("03BF13", "humidity", 50.55),
        ("2E23", "humidity", 35),
        ("05138A14", "illuminance", 13460.67),
        ("0B021B00", "power", 69.14),
        ("04138A01", "pressure", 100883),  # 1008.83 hPa, reported in Pa
        ("02CA09", "temperature", 25.06),
        ("45FE00", "temperature", 25.4),
        ("5AEAEA", "count", -5398),
        ("5D02EA", "current", -5.63),
        ("3A01", "button", "press"),
        ("2101", "motion", True),
        ("1A00", "door", False),
        ("F100010204", "firmware", "4.2.1.0"),
        ("530454657374", "text", "Test"),
    ],
)
def test_bthome_objects(objects, key, value):
    packet = bthome.decode(bytes.fromhex("40" + objects), "A4:C1:38:00:00:01")
    assert values(packet) == {key: value}


def test_bthome_repeated_object_is_numbered():
    packet = bthome.decode(bytes.fromhex("40" + "02CA09" + "02C409"), "A4:C1:38:00:00:01")
    assert values(packet) == {"temperature": 25.06, "temperature_2": 25.0}


def test_bthome_unknown_object_keeps_what_came_before():
    packet = bthome.decode(bytes.fromhex("40" + "02CA09" + "EE0102"), "A4:C1:38:00:00:01")
    assert values(packet) == {"temperature": 25.06}
    assert packet.truncated


@pytest.mark.parametrize(
    ("hexdata", "message"),
    [("20" + "02CA09", "version 1"), ("40" + "02CA", "needs 2 bytes"), ("", "empty")],
)
def test_bthome_malformed_frames_are_errors(hexdata, message):
    with pytest.raises(bthome.BTHomeError, match=message):
        bthome.decode(bytes.fromhex(hexdata), "A4:C1:38:00:00:01")


# bthome.io/encryption: objects 02CA09 03BF13, key 231d39c1..., MAC 5448E68F80A5,
# counter bytes 00112233, device information 0x41; published result below.
ENC_KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
ENC_MAC = "54:48:E6:8F:80:A5"
ENC_FRAME = bytes.fromhex("41" + "a47266c95f73" + "00112233" + "78237214")


def test_bthome_encrypted_example_decrypts():
    packet = bthome.decode(ENC_FRAME, ENC_MAC, ENC_KEY)
    assert values(packet) == {"temperature": 25.06, "humidity": 50.55}
    assert packet.encrypted and packet.counter == 0x33221100


def test_bthome_encryption_matches_the_published_frame():
    assert bthome.encrypt(bytes.fromhex("02CA0903BF13"), ENC_MAC, ENC_KEY, counter=0x33221100) == ENC_FRAME


def test_bthome_wrong_key_or_missing_key_is_refused():
    with pytest.raises(bthome.BTHomeKeyError, match="does not match"):
        bthome.decode(ENC_FRAME, ENC_MAC, bytes(16))
    with pytest.raises(bthome.BTHomeKeyError, match="no bind key"):
        bthome.decode(ENC_FRAME, ENC_MAC, None)
    tampered = ENC_FRAME[:3] + bytes([ENC_FRAME[3] ^ 1]) + ENC_FRAME[4:]
    with pytest.raises(bthome.BTHomeKeyError):
        bthome.decode(tampered, ENC_MAC, ENC_KEY)
    with pytest.raises(bthome.BTHomeKeyError):  # the MAC is part of the nonce
        bthome.decode(ENC_FRAME, "54:48:E6:8F:80:A6", ENC_KEY)


def test_bthome_encode_round_trips():
    objects = bthome.encode([(0x01, 87), (0x02, -3.5), (0x03, 45.25), (0x21, True)], packet_id=9)
    packet = bthome.decode(bthome.service_data(objects), "A4:C1:38:00:00:01")
    assert values(packet) == {"packet_id": 9, "battery": 87, "temperature": -3.5, "humidity": 45.25, "motion": True}


# -- RuuviTag data format 5: the test vectors of docs.ruuvi.com ---------------


def ruuvi_values(raw: str) -> dict[str, object]:
    return {m.key: m.value for m in ruuvi.decode(bytes.fromhex(raw)).measurements}


def test_ruuvi_valid_vector():
    frame = ruuvi.decode(bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"))
    assert {m.key: m.value for m in frame.measurements} == {
        "temperature": 24.3, "humidity": 53.49, "pressure": 100044,
        "acceleration_x": 0.004, "acceleration_y": -0.004, "acceleration_z": 1.036,
        "battery_voltage": 2977, "tx_power": 4, "movement_counter": 66, "sequence": 205,
    }
    assert frame.mac == "CB:B8:33:4C:88:4F" and frame.sequence == 205


def test_ruuvi_maximum_vector():
    assert ruuvi_values("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F") == {
        "temperature": 163.835, "humidity": 163.835, "pressure": 115534,
        "acceleration_x": 32.767, "acceleration_y": 32.767, "acceleration_z": 32.767,
        "battery_voltage": 3646, "tx_power": 20, "movement_counter": 254, "sequence": 65534,
    }


def test_ruuvi_minimum_vector():
    assert ruuvi_values("058001000000008001800180010000000000CBB8334C884F") == {
        "temperature": -163.835, "humidity": 0.0, "pressure": 50000,
        "acceleration_x": -32.767, "acceleration_y": -32.767, "acceleration_z": -32.767,
        "battery_voltage": 1600, "tx_power": -40, "movement_counter": 0, "sequence": 0,
    }


def test_ruuvi_invalid_vector_reports_nothing():
    frame = ruuvi.decode(bytes.fromhex("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF"))
    assert frame.measurements == () and frame.sequence is None


def test_ruuvi_other_formats_and_lengths_are_errors():
    with pytest.raises(ruuvi.RuuviError, match="format 3"):
        ruuvi.decode(bytes.fromhex("03291A1ECE1EFC18F94202CA0B53"))
    with pytest.raises(ruuvi.RuuviError, match="24 bytes"):
        ruuvi.decode(bytes.fromhex("0512FC5394"))


def test_ruuvi_encode_round_trips():
    raw = ruuvi.encode(24.3, 53.49, 100044, (0.004, -0.004, 1.036), 2977, 4, 66, 205, "CB:B8:33:4C:88:4F")
    assert raw.hex().upper() == "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"


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


# -- Xiaomi MiBeacon (0xFE95) -----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "product", "expected"),
    [
        ("5020aa0137dfaa33342d580d100404016602", 0x01AA, {"temperature": 26.0, "humidity": 61.4}),  # Mi Jia round
        ("5020aa018ddfaa33342d580610026602", 0x01AA, {"humidity": 61.4}),
        ("5020aa0155aabbccddeeff0a100151", 0x01AA, {"battery": 81}),
        ("5020aa018ddfaa33342d580410021201", 0x01AA, {"temperature": 27.4}),
        ("712098004a63b6658d7cc40d071003f32600", 0x0098, {"illuminance": 9971}),  # Mi Flora (capability byte)
        ("712098005763b6658d7cc40d0810011e", 0x0098, {"moisture": 30}),
        ("7120980008ffeeddccbbaa0d0910020000", 0x0098, {"conductivity": 0}),
        ("5020df025b3a5c014357481010020800", 0x02DF, {"formaldehyde": 0.08}),  # formaldehyde detector
    ],
)
def test_mibeacon_frames(raw, product, expected):
    frame = mibeacon.decode(bytes.fromhex(raw))
    assert frame.product == product
    assert {m.key: m.value for m in frame.measurements} == expected


def test_mibeacon_mac_and_what_it_refuses():
    assert mibeacon.decode(bytes.fromhex("5020aa0137dfaa33342d580d100404016602")).mac == "58:2D:34:33:AA:DF"
    with pytest.raises(mibeacon.MiBeaconError, match="encrypted"):
        mibeacon.decode(bytes.fromhex("58585b058ac7a8d938c1a4095b0a2c11000000bad78d0f"))  # a stock LYWSD03MMC's frame
    with pytest.raises(mibeacon.MiBeaconError, match="claims 4 bytes"):
        mibeacon.decode(bytes.fromhex("5020aa0137dfaa33342d580d10040401"))


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
