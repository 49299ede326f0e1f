"""Hostile advertisements never crash the BLE decoders: whatever bytes a
neighbour broadcasts as service or manufacturer data, under whatever name,
``Adverts.decode`` (the parsers of every family included) either raises
``AdvertError`` (which the adapter counts as a bad frame) or returns
measurements whose values are finite numbers, bools or strings of the type
they declare. Any other exception would escape the scanner's callback as a
crash."""

from __future__ import annotations

import math

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from hypothesis import given
from hypothesis import strategies as st

from edged.adapters.ble import advert, atc, ibeacon, simulator
from edged.adapters.ble.formats import NAMES, service_uuid
from edged.model import ValueType

ADDRESS = "A4:C1:38:00:00:01"
KEY = bytes(range(16))
# Addresses as bleak gives them: a MAC, or on macOS a UUID (no MAC to build a nonce from).
ADDRESSES = st.sampled_from([ADDRESS, "00:00:00:00:00:00", "5A3C0E8E-7E1D-4A53-9C2B-2F1B6D7C8E90", "ZZ"])
SERVICE_UUIDS = (simulator.BTHOME_UUID, atc.UUID, service_uuid(0xFE95), service_uuid(0xFDCD), service_uuid(0x181C),
                 service_uuid(0xFD50))  # fmt: skip
COMPANIES = (simulator.RUUVI_COMPANY_ID, ibeacon.COMPANY_ID, 0xEC88, 0x089C, 61122, 0x0001)
NAMES_HEARD = st.sampled_from([None, "", "GVH5075_2762", "sps", "TP357S (2142)", "SensorPush HT.w 1234", "iBBQ",
                               "LYWSD03MMC", "Ruuvi Air"])  # fmt: skip

_objects = st.lists(st.tuples(st.sampled_from(sorted(simulator.BTHOME_OBJECTS)), st.floats(0, 60)), max_size=5)
bthome_plain = st.one_of(
    _objects.map(lambda o: simulator.bthome_plain(simulator.bthome_objects([(i, v) for i, v in o if i != 0]))),
    st.binary(max_size=24).map(lambda b: b"\x40" + b),
)
bthome_sealed = st.tuples(st.binary(max_size=20), st.integers(0, 2**32 - 1)).map(
    lambda t: simulator.bthome_encrypted(t[0], ADDRESS, KEY, t[1])
)
mibeacon_frames = st.tuples(
    st.integers(0, 0xFFFF),
    st.binary(min_size=3, max_size=12),
    st.lists(st.tuples(st.sampled_from([0x1004, 0x1006, 0x1007, 0x1008, 0x1009, 0x100A, 0x100D, 0x1010, 0x0000]),
                       st.integers(0, 8), st.binary(max_size=8)), max_size=4),
).map(lambda t: t[0].to_bytes(2, "little") + t[1] + b"".join(k.to_bytes(2, "little") + bytes([n]) + v
                                                             for k, n, v in t[2]))
ruuvi_frames = st.sampled_from([3, 5, 6, 0xE1]).flatmap(lambda f: st.binary(min_size=13, max_size=40).map(
    lambda b: bytes([f]) + b))
ibeacon_frames = st.binary(min_size=21, max_size=21).map(lambda b: b"\x02\x15" + b)


def _service_data(uuid: str) -> st.SearchStrategy[bytes]:
    shaped = {simulator.BTHOME_UUID: st.one_of(bthome_plain, bthome_sealed), service_uuid(0xFE95): mibeacon_frames,
              atc.UUID: st.sampled_from([13, 15]).flatmap(lambda n: st.binary(min_size=n, max_size=n))}
    return st.one_of(st.binary(max_size=40), shaped.get(uuid, st.binary(max_size=24)))


def _manufacturer(company: int) -> st.SearchStrategy[bytes]:
    shaped = {simulator.RUUVI_COMPANY_ID: ruuvi_frames, ibeacon.COMPANY_ID: ibeacon_frames}
    return st.one_of(st.binary(max_size=30), shaped.get(company, st.binary(min_size=2, max_size=20)))


adverts = st.builds(
    lambda service, manufacturer, rssi, name: AdvertisementData(
        local_name=name, manufacturer_data=manufacturer, service_data=service, service_uuids=list(service),
        tx_power=None, rssi=rssi, platform_data=(),
    ),
    st.fixed_dictionaries({}, optional={u: _service_data(u) for u in SERVICE_UUIDS}),
    st.fixed_dictionaries({}, optional={c: _manufacturer(c) for c in COMPANIES}),
    st.integers(-127, 20),
    NAMES_HEARD,
)
DECODERS = {keyed: advert.Adverts(advert.chosen(NAMES), {ADDRESS: KEY} if keyed else {}) for keyed in (False, True)}


def _check(measurement: object) -> None:
    key, value, unit, kind = measurement  # type: ignore[misc]
    assert isinstance(key, str) and key
    assert unit is None or isinstance(unit, str)
    if kind is ValueType.BOOL:
        assert isinstance(value, bool)
    elif kind is ValueType.STR:
        assert isinstance(value, str)
    else:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
        assert kind is ValueType.FLOAT or isinstance(value, int), (key, value, kind)
        assert math.isfinite(value), (key, value)


@given(address=ADDRESSES, adv=adverts, keyed=st.booleans(), now=st.floats(0, 1e6))
def test_any_advertisement_decodes_or_raises_advert_error(address: str, adv: AdvertisementData, keyed: bool,
                                                          now: float) -> None:  # fmt: skip
    try:
        frames = DECODERS[keyed].decode(BLEDevice(address, None, {}), adv, now)
    except advert.AdvertError as exc:
        assert str(exc)
        return
    for frame in frames:
        assert frame.native_id and frame.model
        for measurement in frame.measurements:
            _check(measurement)


@given(data=st.one_of(st.binary(max_size=20), st.sampled_from([13, 15]).flatmap(
    lambda n: st.binary(min_size=n, max_size=n))))
def test_atc_raises_only_atc_error(data: bytes) -> None:
    try:
        frame = atc.decode(data)
    except atc.AtcError:
        return
    for measurement in frame.measurements:
        _check(measurement)


@given(data=st.one_of(st.binary(max_size=30), ibeacon_frames), rssi=st.integers(-127, 20))
def test_ibeacon_never_raises(data: bytes, rssi: int) -> None:
    beacon = ibeacon.decode(data)
    if beacon is not None:
        assert -128 <= beacon.power <= 127
        assert math.isfinite(ibeacon.distance(beacon.power, rssi))
