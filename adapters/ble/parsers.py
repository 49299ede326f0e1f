"""Devices decoded by a parser of the sensor-state-data family (bthome-ble,
xiaomi-ble, ruuvitag-ble, ...): one parser instance per device, as the
parsers expect (they remember packet ids, encryption counters and which
manufacturer data changed).

bleak's ``AdvertisementData`` becomes the parsers' ``BluetoothServiceInfoBleak``;
what a parser reports (sensors, binary sensors, events) becomes
``Measurement``s through the one table in ``units.py``. Only what the frame
said is reported: a parser's update holds every value it ever saw, so values
it did not set again are left out.

Encrypted frames keep edged's replay protection: a frame whose counter is
not above the last one taken from the device raises ``Replay``, whatever
the parser thinks of it. A device that forgets (silence, eviction) starts
again with a fresh parser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from habluetooth import BluetoothServiceInfoBleak
from sensor_state_data import SensorUpdate

from edged.adapters.ble import units
from edged.adapters.ble.formats import Decoded, NeedsKey, Replay
from edged.adapters.ble.measurement import Measurement
from edged.model import ValueType

SOURCE = "edged"
INT = ValueType.INT

# (the parser after an update, the frame) -> why an encrypted frame said nothing, or None
Problem = Callable[[Any, bytes], str | None]
# the frame -> its encryption counter, or None for a frame that is not encrypted
Counter = Callable[[bytes], int | None]
# what a parser's value becomes: key, unit, type, the class of values that pass unchanged, the point,
# whether it counts as news
_Made = tuple[str, str | None, ValueType, type | None, units.PointSpec, bool]
_new = tuple.__new__  # a Measurement or Decoded made from its fields without a call into Python code


def quiet(*loggers: str) -> None:
    """The parsers log every odd frame; the adapter reports problems itself, once per device.
    A logger whose level was configured keeps it."""
    for name in loggers:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)


class RssiByEdged:
    """Mixed into a parser class (first among its bases): the parser's updates leave the RSSI out, and
    ``ParserDecoder(rssi=True)`` adds it to what a frame said. A parser makes the RSSI one more sensor
    of every update, about a tenth of the cost of a small frame; for a parser that reports one device
    (no ``device_id``) that sensor is the advertisement's RSSI, which edged has at hand."""

    def update_signal_strength(self, native_value: float) -> None:
        """Called by the parser's ``update``; the RSSI is edged's to report."""


class ParserDecoder:
    """One device's parser, and what edged remembers of it. With ``rssi``, the parser leaves the
    RSSI out (``RssiByEdged``) and the decoder adds it to every frame that said something."""

    __slots__ = ("_counter", "_flags", "_frame", "_ids", "_label", "_last", "_parser", "_problem", "_rssi", "_sensors")

    def __init__(self, parser: Any, label: str, frame: Callable[[AdvertisementData], bytes],
                 counter: Counter | None = None, problem: Problem | None = None, rssi: bool = False) -> None:  # fmt: skip
        self._parser = parser
        self._rssi = rssi
        self._label = label
        self._frame = frame  # the bytes of the family's frame in an advertisement (what dedup compares)
        self._counter = counter
        self._problem = problem
        self._last: int | None = None  # the counter of the last encrypted frame taken
        # per parser key, in the parser's order: [the value object last seen, what it becomes (_Made)
        # or None when not reported or False when not made yet, the key]
        self._sensors: list[list[Any]] = []
        self._flags: list[list[Any]] = []
        self._ids: tuple[str, str, str | None] | None = None  # native id, model, manufacturer

    def __call__(self, device: BLEDevice, adv: AdvertisementData, now: float) -> Decoded | None:
        frame = self._frame(adv)
        count = self._counter(frame) if self._counter is not None else None
        if count is not None and self._last is not None and count <= self._last:
            raise Replay("an encrypted frame whose counter is not above the last one was ignored as a replay")
        info = BluetoothServiceInfoBleak(
            adv.local_name or "", device.address, adv.rssi, adv.manufacturer_data, adv.service_data,
            adv.service_uuids, SOURCE, device, adv, False, now, adv.tx_power,
        )
        try:
            update = self._parser.update(info)
        except Exception as exc:  # a parser's bug is a bad frame, never a crash of the scanner
            raise ValueError(f"the parser failed on {frame.hex()}: {type(exc).__name__}: {exc}") from exc
        out: list[Measurement] = []
        news = self._walk(update.entity_values, self._sensors, update.entity_descriptions, False, out)
        if update.binary_entity_values or update.events:
            news = self._flags_and_events(update, news, out)
        if not news:
            problem = self._problem(self._parser, frame) if self._problem is not None else None
            if problem is not None:
                raise NeedsKey(problem)
            return None
        if self._rssi:
            out.append(_new(Measurement, ("rssi", adv.rssi, "dBm", INT)))
        if count is not None:
            self._last = count
        ids = self._ids
        if ids is None or news > 1:  # new points: the parser may know the model better by now
            ids = self._ids = self._identify(device, update)
        return _new(Decoded, (ids[0], ids[1], frame, tuple(out), ids[2]))

    def _identify(self, device: BLEDevice, update: SensorUpdate) -> tuple[str, str, str | None]:
        info = update.devices.get(None) or next(iter(update.devices.values()), None)
        model = (info.model if info is not None else None) or self._label
        return device.address.lower(), model, info.manufacturer if info is not None else None

    def _flags_and_events(self, update: SensorUpdate, news: int, out: list[Measurement]) -> int:
        """The binary values and events this update set, appended to ``out`` after its values; ``news``
        as ``_walk`` counts it, for the update as a whole."""
        if update.binary_entity_values:
            news = max(news, self._walk(update.binary_entity_values, self._flags, update.binary_entity_descriptions,
                                        True, out))  # fmt: skip
        for device_key, event in update.events.items():
            steps = (event.event_properties or {}).get("steps")
            text = event.event_type if steps is None else f"{event.event_type} {steps}"
            out.append(Measurement(_key(device_key), text, None, ValueType.STR))
            news = news or 1
        return news

    def _walk(self, values: dict[Any, Any], slots: list[list[Any]], descriptions: dict[Any, Any], binary: bool,
              out: list[Measurement]) -> int:  # fmt: skip
        """Append the values set anew to ``out``; return 0 when none counts (the RSSI alone does not),
        1 when known points were set, 2 when new ones. A parser's update holds every value it ever set,
        in the order first set (it never drops one): ``slots`` follows that order with the value object
        last seen and what it becomes, so telling new values from old ones needs no hashing."""
        if len(values) != len(slots):
            known = {slot[2]: slot for slot in slots}
            slots[:] = [known.get(k) or [None, False, k] for k in values]
        news = 0
        for slot, sensor in zip(slots, values.values(), strict=True):
            if slot[0] is sensor:
                continue  # set by an earlier frame, not by this one
            slot[0] = sensor
            made = slot[1]
            if made is None:
                continue  # not reported
            fresh = 1
            if made is False:
                made = slot[1] = self._point(slot[2], descriptions.get(slot[2]), sensor.native_value, binary)
                if made is None:
                    continue
                fresh = 2
            key, unit, kind, plain, point, counts = made
            value = sensor.native_value
            if value.__class__ is not plain:
                value = units.value(point, value)
                if value is None:
                    continue
            out.append(_new(Measurement, (key, value, unit, kind)))
            if counts and fresh > news:
                news = fresh
        return news

    def _point(self, device_key: Any, description: Any, native: object, binary: bool) -> _Made | None:
        """What a parser's value becomes: its point's key, unit and type, the class of values that
        pass unchanged, the point, and whether it counts as news (the RSSI alone does not)."""
        if str(device_key.key) in units.DROPPED:
            return None
        device_class = getattr(description, "device_class", None)
        unit = getattr(description, "native_unit_of_measurement", None)
        point = units.spec(_key(device_key), None if device_class is None else str(device_class),
                           None if unit is None else str(unit), binary)  # fmt: skip
        if not binary and isinstance(native, (str, date)):  # datetime is a date
            point = point._replace(type=ValueType.STR, unit=None, factor=1.0)
        plain = {ValueType.FLOAT: float, ValueType.INT: int}.get(point.type) if point.factor == 1 else None
        if binary:
            plain = bool
        return point.key, point.unit, point.type, plain, point, point.key != "rssi"


def _key(device_key: Any) -> str:
    key = str(device_key.key)
    return key if device_key.device_id is None else f"{key}_{device_key.device_id}"


def service_data(uuid: str) -> Callable[[AdvertisementData], bytes]:
    """The family's frame is the service data of ``uuid``."""
    return lambda adv: adv.service_data.get(uuid, b"")


def first_service_data(uuids: frozenset[str]) -> Callable[[AdvertisementData], bytes]:
    """The family's frame is the service data of the first of ``uuids`` present."""
    def frame(adv: AdvertisementData) -> bytes:
        for uuid, data in adv.service_data.items():
            if uuid in uuids:
                return data
        return b""

    return frame


def manufacturer_data(adv: AdvertisementData) -> bytes:
    """The family's frame is the manufacturer data, all of it (company ids included)."""
    return b"".join(c.to_bytes(2, "little") + d for c, d in adv.manufacturer_data.items())
