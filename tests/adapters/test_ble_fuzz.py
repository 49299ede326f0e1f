"""Hostile advertisements never crash the BLE decoders: whatever bytes a
neighbour broadcasts as service or manufacturer data, ``advert.decode``
either raises ``AdvertError`` (which the adapter counts as a bad frame) or
returns measurements whose values are finite numbers, bools or strings of
the type they declare. Any other exception would escape the scanner's
callback as a crash."""

from __future__ import annotations

import math

import pytest
from bleak.backends.scanner import AdvertisementData
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.adapters.ble import advert, atc, bthome, ibeacon, mibeacon, ruuvi
from edged.model import ValueType

ADDRESS = "A4:C1:38:00:00:01"
KEY = bytes(range(16))
# Addresses as bleak gives them: a MAC, or on macOS a UUID (no MAC to build a BTHome nonce from).
ADDRESSES = st.sampled_from([ADDRESS, "00:00:00:00:00:00", "5A3C0E8E-7E1D-4A53-9C2B-2F1B6D7C8E90", "ZZ"])
SERVICE_UUIDS = (bthome.UUID, atc.UUID, mibeacon.UUID)
COMPANIES = (ruuvi.COMPANY_ID, ibeacon.COMPANY_ID)


def _object(object_id: int) -> st.SearchStrategy[bytes]:
    """One object of a known id: its id and a value of the size the id fixes (text and raw: a length byte)."""
    size = bthome.OBJECTS[object_id].size
    value = st.binary(max_size=12).map(lambda b: bytes([len(b)]) + b) if size == 0 else st.binary(min_size=size,
                                                                                                 max_size=size)
    return value.map(lambda v: bytes([object_id]) + v)


KNOWN = st.sampled_from(sorted(bthome.OBJECTS)).flatmap(_object)


def _objects() -> st.SearchStrategy[bytes]:
    """BTHome objects, mostly well formed so that decoding reaches every id's value, some garbage."""
    garbage = st.binary(min_size=1, max_size=6)
    return st.lists(st.one_of(KNOWN, KNOWN, garbage), max_size=8).map(b"".join)


bthome_plain = st.tuples(st.integers(0, 255).map(lambda b: (b & 0x1F) | 0x40), _objects()).map(
    lambda t: bytes([t[0] & ~0x01]) + t[1]
)
bthome_sealed = st.tuples(_objects(), st.integers(0, 2**32 - 1), st.booleans()).map(
    lambda t: bthome.encrypt(t[0], ADDRESS, KEY, t[1], t[2])
)
mibeacon_frames = st.tuples(
    st.integers(0, 0xFFFF).map(lambda c: c & ~0x0008 | 0x0040),  # unencrypted, with objects
    st.binary(min_size=3, max_size=12),
    st.lists(
        st.tuples(st.sampled_from([0x1004, 0x1006, 0x1007, 0x1008, 0x1009, 0x100A, 0x100D, 0x1010, 0x0000]),
                  st.integers(0, 8), st.binary(max_size=8)),
        max_size=4,
    ),
).map(lambda t: t[0].to_bytes(2, "little") + t[1] + b"".join(k.to_bytes(2, "little") + bytes([n]) + v
                                                             for k, n, v in t[2]))
ruuvi_frames = st.binary(min_size=23, max_size=23).map(lambda b: b"\x05" + b)
ibeacon_frames = st.binary(min_size=21, max_size=21).map(lambda b: b"\x02\x15" + b)


def _service_data(uuid: str) -> st.SearchStrategy[bytes]:
    shaped = {bthome.UUID: st.one_of(bthome_plain, bthome_sealed), mibeacon.UUID: mibeacon_frames,
              atc.UUID: st.sampled_from([13, 15]).flatmap(lambda n: st.binary(min_size=n, max_size=n))}
    return st.one_of(st.binary(max_size=40), shaped[uuid])


adverts = st.builds(
    lambda service, manufacturer, rssi: AdvertisementData(
        local_name=None, manufacturer_data=manufacturer, service_data=service, service_uuids=list(service),
        tx_power=None, rssi=rssi, platform_data=(),
    ),
    st.fixed_dictionaries({}, optional={u: _service_data(u) for u in SERVICE_UUIDS}),
    st.fixed_dictionaries({}, optional={
        ruuvi.COMPANY_ID: st.one_of(st.binary(max_size=30), ruuvi_frames),
        ibeacon.COMPANY_ID: st.one_of(st.binary(max_size=30), ibeacon_frames),
    }),
    st.integers(-127, 20),
)


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


@given(address=ADDRESSES, adv=adverts, keyed=st.booleans())
def test_any_advertisement_decodes_or_raises_advert_error(address: str, adv: AdvertisementData, keyed: bool) -> None:
    keys = {address: KEY} if keyed else None
    try:
        frames = advert.decode(address, adv, keys=keys)
    except advert.AdvertError as exc:
        assert str(exc)
        return
    for frame in frames:
        assert frame.native_id and frame.model
        for measurement in frame.measurements:
            _check(measurement)


@given(data=st.one_of(st.binary(max_size=40), bthome_plain, bthome_sealed), address=ADDRESSES,
       key=st.one_of(st.none(), st.just(KEY), st.binary(max_size=20)))
def test_bthome_raises_only_bthome_error_or_bad_address(data: bytes, address: str, key: bytes | None) -> None:
    try:
        packet = bthome.decode(data, address, key)
    except ValueError as exc:  # BTHomeError, or (as advert.decode documents) an address that is no MAC
        assert str(exc)
        return
    for measurement in packet.measurements:
        _check(measurement)


@pytest.mark.parametrize("object_id", sorted(bthome.OBJECTS), ids=lambda i: f"0x{i:02x}")
@settings(max_examples=max(10, settings().max_examples // 10))  # times about 100 ids
@given(data=st.data())
def test_every_bthome_object_decodes_any_value(object_id: int, data: st.DataObject) -> None:
    objects = data.draw(_object(object_id)) + b"".join(data.draw(st.lists(KNOWN, max_size=3)))
    packet = bthome.decode(bthome.service_data(objects), ADDRESS)
    assert packet.measurements and packet.measurements[0].key == bthome.OBJECTS[object_id].key
    for measurement in packet.measurements:
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


@given(data=st.one_of(st.binary(max_size=30), mibeacon_frames))
def test_mibeacon_raises_only_mibeacon_error(data: bytes) -> None:
    try:
        frame = mibeacon.decode(data)
    except mibeacon.MiBeaconError:
        return
    for measurement in frame.measurements:
        _check(measurement)


@given(data=st.one_of(st.binary(max_size=30), ruuvi_frames))
def test_ruuvi_raises_only_ruuvi_error(data: bytes) -> None:
    try:
        frame = ruuvi.decode(data)
    except ruuvi.RuuviError:
        return
    for measurement in frame.measurements:
        _check(measurement)


@given(data=st.one_of(st.binary(max_size=30), ibeacon_frames), rssi=st.integers(-127, 20))
def test_ibeacon_never_raises(data: bytes, rssi: int) -> None:
    beacon = ibeacon.decode(data)
    if beacon is not None:
        assert -128 <= beacon.power <= 127
        assert math.isfinite(ibeacon.distance(beacon.power, rssi))
