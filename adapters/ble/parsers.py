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

# (the parser after an update, the frame) -> why an encrypted frame said nothing, or None
Problem = Callable[[Any, bytes], str | None]
# the frame -> its encryption counter, or None for a frame that is not encrypted
Counter = Callable[[bytes], int | None]


def quiet(*loggers: str) -> None:
    """The parsers log every odd frame; the adapter reports problems itself, once per device.
    A logger whose level was configured keeps it."""
    for name in loggers:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)


class ParserDecoder:
    """One device's parser, and what edged remembers of it."""

    __slots__ = ("_counter", "_frame", "_label", "_last", "_parser", "_points", "_problem", "_seen")

    def __init__(self, parser: Any, label: str, frame: Callable[[AdvertisementData], bytes],
                 counter: Counter | None = None, problem: Problem | None = None) -> None:  # fmt: skip
        self._parser = parser
        self._label = label
        self._frame = frame  # the bytes of the family's frame in an advertisement (what dedup compares)
        self._counter = counter
        self._problem = problem
        self._last: int | None = None  # the counter of the last encrypted frame taken
        self._seen: dict[object, object] = {}  # parser key -> the value object last reported
        self._points: dict[tuple[object, bool], units.PointSpec] = {}

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
        measurements = self._measurements(update)
        if not any(m.key != "rssi" for m in measurements):
            problem = self._problem(self._parser, frame) if self._problem is not None else None
            if problem is not None:
                raise NeedsKey(problem)
            return None
        if count is not None:
            self._last = count
        info_ = update.devices.get(None) or next(iter(update.devices.values()), None)
        model = (info_.model if info_ is not None else None) or self._label
        manufacturer = info_.manufacturer if info_ is not None else None
        return Decoded(device.address.lower(), model, frame, measurements, manufacturer)

    def _measurements(self, update: SensorUpdate) -> tuple[Measurement, ...]:
        out: list[Measurement] = []
        seen = self._seen
        descriptions = update.entity_descriptions
        for device_key, sensor in update.entity_values.items():
            if seen.get(device_key) is sensor or device_key.key in units.DROPPED:
                continue  # set by an earlier frame, not by this one
            seen[device_key] = sensor
            point = self._points.get((device_key, False))
            if point is None:
                description = descriptions.get(device_key)
                point = self._point(device_key, description, sensor.native_value, binary=False)
            value = units.value(point, sensor.native_value)
            if value is not None:
                out.append(Measurement(point.key, value, point.unit, point.type))
        binary_descriptions = update.binary_entity_descriptions
        for device_key, flag in update.binary_entity_values.items():
            if seen.get(device_key) is flag:
                continue
            seen[device_key] = flag
            point = self._points.get((device_key, True))
            if point is None:
                point = self._point(device_key, binary_descriptions.get(device_key), flag.native_value, binary=True)
            if flag.native_value is not None:
                out.append(Measurement(point.key, bool(flag.native_value), None, ValueType.BOOL))
        for device_key, event in update.events.items():
            steps = (event.event_properties or {}).get("steps")
            text = event.event_type if steps is None else f"{event.event_type} {steps}"
            out.append(Measurement(_key(device_key), text, None, ValueType.STR))
        return tuple(out)

    def _point(self, device_key: Any, description: Any, native: object, binary: bool) -> units.PointSpec:
        device_class = getattr(description, "device_class", None)
        unit = getattr(description, "native_unit_of_measurement", None)
        point = units.spec(_key(device_key), None if device_class is None else str(device_class),
                           None if unit is None else str(unit), binary)  # fmt: skip
        if not binary and isinstance(native, (str, date)):  # datetime is a date
            point = point._replace(type=ValueType.STR, unit=None, factor=1.0)
        self._points[(device_key, binary)] = point
        return point


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
