"""The BLE adapter: a scanner whose advertisements (the families of
``formats:``) become readings without connecting, and GATT links for the
devices declared under ``gatt:``.

Per advertiser the adapter keeps the last frame and when it was heard: an
identical frame within ``dedup_window`` is dropped, an advertiser silent for
``offline_after`` goes offline (an iBeacon also reports ``present: false``)
and comes back online with its next frame. Encrypted frames (BTHome,
Xiaomi) must carry a counter higher than the last one (replay protection),
unless the device was silent long enough to have restarted: its decoder is
forgotten when it goes offline. A device whose frames need a key that
``keys:`` does not have (or whose key does not match) is logged once with
the reason and counted in ``needs_key``; a configured one is also a health
problem. A frame that cannot be used is the problem of its device
(``BLE frame needs a bind key (Xiaomi)``, ``bind key does not decrypt the
frame (BTHome)``) when the Hub knows it or the configuration names it: a
configured device none of whose frames could be read is registered without
points, to show it. A neighbour's device is only counted. Readings of advertisements decoded in the same loop iteration
travel to the Hub as one batch.

At most ``max_devices`` advertisers are tracked. When a new one is heard
with all places taken, the one silent longest gives up its place (it leaves
the Hub, is counted in ``evicted_total`` and logged at debug; a summary is
logged at most once a minute), so a crowd of random addresses cannot lock
out a real sensor until restart. Devices named in the configuration
(``addresses``, ``keys``, ``gatt``) are never evicted, and always
find a place.

Without a Bluetooth adapter or BlueZ, ``run()`` logs one clear error, sets
``state`` to ``failed`` and raises ``AdapterError``; the daemon's
supervisor retries it with backoff while the rest of the gateway runs.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bleak import BleakScanner
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from edged.adapter import Adapter, AdapterStats
from edged.adapters.ble import advert, formats
from edged.adapters.ble.backend import BleBackend
from edged.adapters.ble.config import BleConfig
from edged.adapters.ble.gatt import GattLink, Sightings, points
from edged.adapters.ble.measurement import Measurement
from edged.errors import AdapterError, CommandError
from edged.hub import Hub
from edged.model import Command, Device, DeviceAdded, Point, Quality, Reading
from edged.part import counter, gauge

try:  # BlueZ talks D-Bus; its errors are not all BleakErrors
    from dbus_fast import DBusError as _DBusError

    STARTUP_ERRORS: tuple[type[Exception], ...] = (BleakError, OSError, EOFError, _DBusError)
except ImportError:  # pragma: no cover - not Linux
    STARTUP_ERRORS = (BleakError, OSError, EOFError)


_new = tuple.__new__  # a Reading made from its fields without a call into Python code
GOOD = Quality.GOOD


@dataclass
class BleStats(AdapterStats):
    adverts: int = counter("edged_adapter_ble_adverts", "Advertisements heard")
    duplicates: int = counter("edged_adapter_ble_duplicates", "Advertisements that repeated the last one within the dedup window")
    evicted: int = counter("edged_adapter_ble_evicted", "Advertisers forgotten to make room for new ones")
    needs_key: int = gauge("edged_adapter_ble_needs_key",
                           "Advertisers whose encrypted frames need a key that keys: does not have, or whose key does not match")


@dataclass(slots=True)
class _Advertiser:
    device: Device
    heard: float  # loop time of the last frame
    payload: bytes = b""
    beacon: bool = False
    keys: set[str] = field(default_factory=set)
    pinned: bool = False  # named in the configuration: never evicted


class BleAdapter(Adapter[BleConfig]):
    config_model = BleConfig

    def __init__(self, config: BleConfig, hub: Hub, state_dir: Path, backend: BleBackend | None = None) -> None:
        super().__init__(config, hub, state_dir)
        self._backend = backend
        self._scanner: BleakScanner | None = None
        self._advertisers: OrderedDict[str, _Advertiser] = OrderedDict()  # least recently heard first
        self._problems: dict[str, str] = {}  # native id -> the problem last logged for it
        self._links: dict[str, GattLink] = {}
        self._sightings = Sightings()
        self._pending: list[Reading] = []
        self._loop: asyncio.AbstractEventLoop  # the loop the scanner delivers in, from start()
        self._clock: Callable[[], float] = time.monotonic  # its time
        self._flush_scheduled = False
        self._formats = advert.chosen(config.formats)
        self._keys = config.all_keys()
        self._adverts = advert.Adverts(self._formats, self._keys, capacity=2 * config.max_devices + len(self._keys))
        self._locked: dict[str, str] = {}  # address -> why its encrypted frames cannot be read
        # address -> its last decoded service data, manufacturer data, when heard, what it spoke for
        self._last_heard: OrderedDict[str, tuple[dict[str, bytes], dict[int, bytes], float, list[str]]] = OrderedDict()
        self._addresses = set(config.addresses)
        self._filtered = bool(self._addresses or config.names)  # only some advertisers are wanted
        self._gatt_addresses = {d.address for d in config.gatt}
        self._pinned = self._addresses | self._gatt_addresses | set(self._keys)
        self._dedup_window = config.dedup_window
        self._remembered = 2 * config.max_devices  # advertisers whose last frame is kept for dedup
        self._full = False
        self._evictions_logged = -math.inf  # loop time of the last eviction summary
        self._evictions_unlogged = 0
        self.adverts_total = 0
        self.duplicates_total = 0
        self.evicted_total = 0

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        # asyncio.get_running_loop() asks the kernel for the process id on every call: the loop that
        # delivers the advertisements is looked up once
        self._loop = loop = asyncio.get_running_loop()
        # asyncio's own loops tell the time with time.monotonic(): called without a method around it
        self._clock = time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        backend = self._backend
        if backend is None:
            if self.config.backend == "simulated":
                from edged.adapters.ble.simulator import demo_air

                backend = demo_air().backend()
            else:
                backend = BleBackend()
        bluez: dict[str, object] = {}
        if self.config.adapter:
            bluez["adapter"] = self.config.adapter
        if self.config.scanning == "passive":
            bluez["or_patterns"] = self._passive_patterns()
        scanner = BleakScanner(self._on_advert, scanning_mode=self.config.scanning, bluez=bluez,  # type: ignore[arg-type]
                               backend=backend.scanner)
        try:
            await scanner.start()
        except STARTUP_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.log.error(
                "BLE adapter %s cannot scan: no usable Bluetooth adapter or BlueZ (%s). Check that a "
                "Bluetooth adapter is present (hciconfig / bluetoothctl list) and that bluetoothd runs; "
                "the rest of the gateway keeps running.", self.name, reason,
            )
            raise AdapterError(f"BLE adapter {self.name}: no usable Bluetooth adapter or BlueZ: {reason}") from exc
        self._scanner = scanner
        slots = asyncio.Semaphore(self.config.max_connections)
        for spec in self.config.gatt:
            device_id = self.device_id(spec.id)
            self.add_device(Device(device_id, self.name, spec.name or spec.id, None, "GATT device", points(spec)))
            link = GattLink(
                spec, device_id, self._sightings, slots, self.publish, self.set_online, self.log,
                backend.client, self.config.connect_attempts, self.config.reconnect_max, self._count_reconnect, self.problem,
            )
            self._links[device_id] = link
            self.tasks.spawn(link.run(), name=f"{self.name} link {spec.id}")
        self.tasks.spawn(self._watch_silence(), name=f"{self.name} silence")

    async def stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            try:
                async with asyncio.timeout(5.0):
                    await scanner.stop()
            except (*STARTUP_ERRORS, TimeoutError) as exc:
                self.log.warning("stopping the BLE scanner failed: %s", exc)
        self._flush()

    async def write(self, command: Command) -> None:
        link = self._links.get(command.device_id)
        if link is None:
            raise CommandError(f"{command.device_id} takes no commands (only GATT devices do)")
        await link.write(command.key, command.value)

    def _count_reconnect(self) -> None:
        self.reconnects_total += 1

    def _passive_patterns(self) -> list[tuple[int, AdvertisementDataType, bytes]]:
        # BlueZ's passive scanning reports only advertisements matching one of these.
        return [(offset, AdvertisementDataType(ad_type), data) for kind in self._formats
                for offset, ad_type, data in kind.patterns()]  # fmt: skip

    # -- advertisements --------------------------------------------------

    def _wanted(self, address: str, name: str | None) -> bool:
        if address in self._addresses:
            return True
        return name is not None and any(fnmatch.fnmatchcase(name, pattern) for pattern in self.config.names)

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        """bleak's detection callback: runs in the loop, must not block."""
        self.adverts_total += 1
        address = device.address.upper()
        if address in self._gatt_addresses:
            self._sightings.saw(device, address)
        if self._filtered and not self._wanted(address, adv.local_name):
            return
        now = self._clock()
        last = self._last_heard.get(address)
        if last is not None and now - last[2] < self._dedup_window and self._repeated(address, last, adv, now):
            return
        try:
            frames = self._adverts.decode(device, adv, now)
        except advert.AdvertError as exc:
            cause = exc.__cause__
            if isinstance(cause, advert.NeedsKey) and len(self._locked) < self.config.max_devices:
                self._locked[address] = str(exc)
            replay = isinstance(cause, advert.Replay)
            self._bad_frame(address, str(exc), log_only=replay, reason=None if replay else self._reason(address, exc))
            return
        if self._locked:
            self._locked.pop(address, None)
        if not frames:
            return
        native_ids = [frames[0].native_id] if len(frames) == 1 else [f.native_id for f in frames]
        self._last_heard[address] = (adv.service_data, adv.manufacturer_data, now, native_ids)
        if len(self._last_heard) > self._remembered:
            self._last_heard.popitem(last=False)
        for frame in frames:
            self._take(frame, adv.local_name, now, address in self._pinned)

    def _repeated(self, address: str, last: tuple[dict[str, bytes], dict[int, bytes], float, list[str]],
                  adv: AdvertisementData, now: float) -> bool:  # fmt: skip
        """An advertisement identical to ``last``, the last one decoded from ``address`` (heard within
        the dedup window): counted as a duplicate without decoding it again (sensors repeat each frame)."""
        if last[0] != adv.service_data or last[1] != adv.manufacturer_data:
            return False
        self._last_heard[address] = (last[0], last[1], now, last[3])
        self._last_heard.move_to_end(address)
        self.duplicates_total += 1
        for native_id in last[3]:
            known = self._advertisers.get(native_id)
            if known is not None:
                known.heard = now
                self._advertisers.move_to_end(native_id)
        return True

    def stats(self) -> BleStats:
        return BleStats(self.readings_total, self.errors_total, self.reconnects_total, self.adverts_total,
                        self.duplicates_total, self.evicted_total, len(self._locked))  # fmt: skip

    def needs_key(self) -> dict[str, str]:
        """The advertisers whose encrypted frames cannot be read, by address: why."""
        return dict(self._locked)

    def health_problems(self) -> list[str]:
        """Configured devices (under addresses: or keys:) whose encrypted frames cannot be read."""
        return [f"adapter {self.name}: {address}: {why}" for address, why in sorted(self._locked.items())
                if address in self._pinned]  # fmt: skip

    def _take(self, frame: advert.Decoded, name: str | None, now: float, pinned: bool = False) -> None:
        known = self._advertisers.get(frame.native_id)
        if known is None:
            known = self._register(frame, name, now, pinned)
            if known is None:
                return
        elif frame.payload == known.payload and now - known.heard < self._dedup_window:
            known.heard = now
            self._advertisers.move_to_end(frame.native_id)
            self.duplicates_total += 1
            return
        known.heard, known.payload = now, frame.payload
        self._advertisers.move_to_end(frame.native_id)
        if self._problems:
            self._problems.pop(frame.native_id, None)
        device = known.device
        measurements = frame.measurements
        keys = known.keys
        for m in measurements:
            if m.key not in keys:
                self._add_points(known, measurements)
                break
        device_id = device.id
        if not device.online:  # the Hub holds this Device: it is the one _register added
            self.set_online(device_id, True)
        ts = time.time()
        append = self._pending.append
        for key, value, _, _ in measurements:
            append(_new(Reading, (device_id, key, value, ts, GOOD)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _add_points(self, known: _Advertiser, measurements: tuple[Measurement, ...]) -> None:
        """The points of ``measurements`` the device did not have yet, told to the Hub."""
        device = known.device
        for m in measurements:
            if m.key not in known.keys:
                device.points[m.key] = Point(m.key, m.type, m.unit)
                known.keys.add(m.key)
        self.hub.emit(DeviceAdded(device))

    def _register(self, frame: advert.Decoded, name: str | None, now: float, pinned: bool) -> _Advertiser | None:
        if len(self._advertisers) >= self.config.max_devices and not self._evict(frame.native_id, now) and not pinned:
            if not self._full:
                self._full = True
                self.log.warning("BLE adapter %s tracks %d configured advertisers (max_devices); ignoring new ones",
                                 self.name, self.config.max_devices)
            return None
        device_id = self.device_id(frame.native_id)
        device = Device(device_id, self.name, name or frame.native_id, frame.manufacturer, frame.model)
        known = _Advertiser(device, now, beacon=frame.model == "iBeacon", pinned=pinned)
        self._advertisers[frame.native_id] = known
        self.add_device(device)
        return known

    def _evict(self, newcomer: str, now: float) -> bool:
        """Make room: forget the advertiser silent longest that the configuration does not name."""
        victim = next((native_id for native_id, known in self._advertisers.items() if not known.pinned), None)
        if victim is None:
            return False
        known = self._advertisers.pop(victim)
        self._problems.pop(victim, None)
        self._adverts.forget(victim)
        self._last_heard.pop(victim.upper(), None)
        self.hub.remove_device(known.device.id)
        self.evicted_total += 1
        self._evictions_unlogged += 1
        self.log.debug("%s silent for %.0f s, evicted for %s (max_devices %d)", known.device.id, now - known.heard,
                       newcomer, self.config.max_devices, extra={"device": known.device.id})  # fmt: skip
        if now - self._evictions_logged >= 60.0:
            self.log.warning("BLE adapter %s: %d advertiser(s) evicted to make room for new ones (max_devices %d "
                             "reached; many random addresses nearby, or raise max_devices); summarised once a minute",
                             self.name, self._evictions_unlogged, self.config.max_devices)  # fmt: skip
            self._evictions_logged, self._evictions_unlogged = now, 0
        return True

    def _reason(self, address: str, exc: advert.AdvertError) -> str:
        """The device's problem for a frame that cannot be used, in a few words."""
        cause = str(exc.__cause__)
        if cause == formats.NO_KEY:
            return f"BLE frame needs a bind key ({exc.family})"
        if cause == formats.WRONG_KEY:
            return f"bind key does not decrypt the frame ({exc.family})"
        return str(exc)

    def _bad_frame(self, native_id: str, problem: str, log_only: bool = False, reason: str | None = None) -> None:
        """Log a frame that cannot be used (once per device and problem) and flag the device's values BAD;
        a ``reason`` is the device's problem, for a device the Hub knows or the configuration names
        (one named but never read is registered without points, to show it)."""
        self.errors_total += 1
        native_id = native_id.lower()
        if reason is not None:
            self._note_problem(native_id, reason)
        if self._problems.get(native_id) == problem:
            return
        if native_id not in self._problems and len(self._problems) >= self.config.max_devices:
            return  # a crowd of strangers with broken frames: counted, not logged
        self._problems[native_id] = problem
        device_id = self.device_id(native_id)
        self.log.warning("%s: %s", device_id, problem, extra={"device": device_id})
        known = self._advertisers.get(native_id)
        if not log_only and known is not None and known.keys:
            ts = time.time()
            self.publish([Reading(device_id, key, None, ts, Quality.BAD) for key in sorted(known.keys)])

    def _note_problem(self, native_id: str, reason: str) -> None:
        device_id = self.device_id(native_id)
        if device_id not in self.hub.devices:
            if native_id.upper() not in self._pinned:
                return  # a neighbour's device: counted, not the gateway's
            self.add_device(Device(device_id, self.name, native_id))
        self.problem(device_id, reason)

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            self.publish(batch)

    async def _watch_silence(self) -> None:
        loop = asyncio.get_running_loop()
        period = min(self.config.offline_after / 4, 5.0)
        while True:
            await asyncio.sleep(period)
            limit = loop.time() - self.config.offline_after
            gone: list[Reading] = []
            for known in self._advertisers.values():
                if known.device.online and known.heard < limit:
                    self.log.info("%s silent for %.0f s", known.device.id, self.config.offline_after,
                                  extra={"device": known.device.id})
                    if known.beacon:
                        gone.append(Reading(known.device.id, "present", False, time.time()))
                    self.set_online(known.device.id, False)
                    address = known.device.id.rpartition("/")[2].upper()
                    self._adverts.forget(address)  # it may restart, counter and all
                    self._last_heard.pop(address, None)
            if gone:
                self.publish(gone)
