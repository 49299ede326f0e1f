"""The Modbus adapter: polls register maps over TCP and RTU, writes commands.

Each connection is one ``Bus`` (one request in flight, writes ahead of
polls, reconnection with backoff). Each device's points are split by poll
interval (the device's own, or a named group's) and planned into as few
reads as the limits allow; polls of one connection are staggered over their
interval. A poll publishes one batch holding a ``Reading`` for each point
whose value changed (beyond its deadband) or whose ``max_interval`` ran out.

Faults: a read that fails (timeout, exception response, connection down)
gives its points one ``Quality.BAD`` reading (value kept from the last good
one), a log line with the device id, and the device's problem (``no answer
within 0.5 s``, ``exception 11: gateway target failed to respond``; with
the points' keys when other reads of the device answered), counted once per
failed poll and cleared once every read of the device answers again. A coalesced read refused with
"illegal data address" (a hole in the device's map) is split into one read
per point from then on, so only the point at the bad address stays bad.
A device whose reads all fail
``fail_after`` polls in a row goes offline and is then probed with backoff
until it answers again. Other devices on the same line keep being polled.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.constants import ExcCodes

from edged import logs
from edged.adapter import Adapter
from edged.adapters.modbus.bus import WRITE, Bus, ExceptionResponse, RequestFailed
from edged.adapters.modbus.codec import BlockCodec, encode, value_type
from edged.adapters.modbus.config import DeviceConfig, ModbusConfig, PointConfig, Table
from edged.adapters.modbus.plan import Read, plan
from edged.backoff import Backoff
from edged.errors import AdapterError, CommandError
from edged.hub import Hub
from edged.model import Command, Device, Point, Quality, Reading, Value

_new = tuple.__new__  # builds a Reading without NamedTuple.__new__'s keyword handling
GOOD = Quality.GOOD
BAD = Quality.BAD


class Block:
    """One planned read of a device with its codec and what was last reported."""

    __slots__ = ("bad", "codec", "count", "deadbands", "due", "keys", "last", "max_intervals", "read", "start", "table")

    def __init__(self, read: Read, device: DeviceConfig) -> None:
        self.read = read
        self.table, self.start, self.count = read.table, read.address, read.count
        self.codec = BlockCodec(read.table, read.address, read.count, read.points)
        points = self.codec.points
        self.keys = [p.key for p in points]
        self.deadbands = [p.deadband or None for p in points]
        self.max_intervals = [_seconds(p.max_interval or device.max_interval) for p in points]
        self.last: list[Value] = [None] * len(points)
        self.due = [0.0] * len(points)  # report whatever the value once this time is passed
        self.bad = False

    def update(self, data: list[int] | list[bool], device_id: str, now: float, batch: list[Reading]) -> None:
        """Decode ``data`` and append a reading for each point due to be reported."""
        values = self.codec.decode(data)
        last, due, deadbands, keys, max_intervals = self.last, self.due, self.deadbands, self.keys, self.max_intervals
        append = batch.append
        for i, value in enumerate(values):
            if now < due[i]:
                previous = last[i]
                if value == previous:
                    continue
                band = deadbands[i]
                if band is not None and previous is not None and abs(value - previous) < band:  # type: ignore[operator]
                    continue
            last[i] = value
            due[i] = now + max_intervals[i]
            append(_new(Reading, (device_id, keys[i], value, now, GOOD)))
        self.bad = False

    def fail(self, device_id: str, now: float, batch: list[Reading]) -> None:
        """Mark the block's points bad (once per outage); the next good value is reported."""
        if self.bad:
            return
        self.bad = True
        for i, key in enumerate(self.keys):
            self.due[i] = 0.0
            batch.append(Reading(device_id, key, self.last[i], now, BAD))

    def remember(self, key: str, value: Value, now: float) -> None:
        """Record a value reported outside a poll (the read-back of a write)."""
        i = self.keys.index(key)
        self.last[i] = value
        self.due[i] = now + self.max_intervals[i]


def _seconds(value: float | None) -> float:
    return math.inf if value is None else value


def _detail(exc: AdapterError) -> str:
    """A failed request as its device's log line tells it (the line names the device)."""
    return f"{exc.request}: {exc.reason}" if isinstance(exc, RequestFailed) else str(exc)


def _reason(block: Block, exc: AdapterError, some_answered: bool) -> str:
    """A poll's failure as the device's problem: the reason, and which points when others were read."""
    reason = exc.reason if isinstance(exc, RequestFailed) else str(exc)
    if not some_answered:
        return reason
    keys = ", ".join(block.keys[:3]) + (", ..." if len(block.keys) > 3 else "")
    return f"{keys}: {reason}"


@dataclass(eq=False)
class DeviceRuntime:
    """A device as the adapter polls it."""

    id: str
    config: DeviceConfig
    bus: Bus
    points: dict[str, tuple[PointConfig, Block]] = field(default_factory=dict)
    failures: int = 0
    online: bool = False


@dataclass(eq=False)
class Poller:
    """The blocks of one device polled at one interval."""

    device: DeviceRuntime
    interval: float
    blocks: list[Block]


class ModbusAdapter(Adapter[ModbusConfig]):
    config_model = ModbusConfig

    def __init__(self, config: ModbusConfig, hub: Hub, state_dir: Path) -> None:
        super().__init__(config, hub, state_dir)
        self.devices: dict[str, DeviceRuntime] = {}
        self.buses: list[Bus] = []
        self.polls_total = 0
        self.overruns_total = 0  # polls skipped because a poll cycle took longer than its interval
        self.lateness: collections.deque[float] = collections.deque(maxlen=10_000)  # seconds the recent polls started late

    async def start(self) -> None:
        self.devices.clear()
        self.buses.clear()
        pollers: list[Poller] = []
        for connection in self.config.connections:
            bus = Bus(connection, self.log, on_lost=self._connection_lost, on_problem=self._bus_problem)
            self.buses.append(bus)
            for spec in connection.devices:
                device = DeviceRuntime(self.device_id(spec.id), spec, bus)
                self.devices[device.id] = device
                pollers.extend(self._pollers(device))
                points = {p.key: Point(p.key, value_type(p), p.unit, p.writable, p.name) for p in spec.points}
                self.add_device(Device(device.id, self.name, spec.name or spec.id, spec.manufacturer, spec.model, points))
            self.tasks.spawn(bus.run(), name=f"{self.name} {bus.name}")
        for index, poller in enumerate(pollers):
            # Stagger all polls over their interval (at most 1 s, so every value arrives soon after start):
            # neither one line nor the gateway's CPU sees every device polled at the same instant.
            offset = min(poller.interval, 1.0) * index / len(pollers)
            self.tasks.spawn(self._poll_loop(poller, offset), name=f"{self.name} poll {poller.device.id}")

    def _pollers(self, device: DeviceRuntime) -> list[Poller]:
        spec = device.config
        by_interval: dict[float, list[PointConfig]] = {}
        for point in spec.points:
            interval = spec.groups[point.group] if point.group is not None else spec.interval
            by_interval.setdefault(interval, []).append(point)
        pollers = []
        for interval, points in by_interval.items():
            reads = plan(points, max_gap=spec.max_gap, max_registers=spec.max_registers, max_bits=spec.max_bits)
            blocks = [Block(read, spec) for read in reads]
            for block in blocks:
                for point in block.codec.points:
                    device.points[point.key] = (point, block)
            pollers.append(Poller(device, interval, blocks))
        return pollers

    def _connection_lost(self) -> None:
        self.reconnects_total += 1

    def _bus_problem(self, reason: str | None) -> None:
        """A connection failed (``cannot connect to tcp://...``); cleared once every connection is up."""
        if reason is not None or all(bus.connected for bus in self.buses):
            self.connection_problem(reason)

    async def stop(self) -> None:
        for bus in self.buses:
            bus.close()

    # -- polling ---------------------------------------------------------

    async def _poll_loop(self, poller: Poller, offset: float) -> None:
        loop = asyncio.get_running_loop()
        device = poller.device
        await device.bus.wait_connected(offset + device.bus.connection.timeout)
        interval = poller.interval
        probe = Backoff(initial=interval, maximum=max(interval, 30.0))
        next_at = loop.time() + offset
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.lateness.append(max(0.0, loop.time() - next_at))
            await self._poll(poller)
            if device.online or device.failures < device.config.fail_after:
                probe.reset()
                next_at += interval
                now = loop.time()
                if next_at < now:  # the cycle took longer than its interval: poll again now, skip the rest
                    self.overruns_total += math.ceil((now - next_at) / interval)
                    next_at = now
            else:
                next_at = loop.time() + probe.next_delay()  # offline: probe with backoff

    async def _poll(self, poller: Poller) -> None:
        device = poller.device
        bus, unit, device_id = device.bus, device.config.unit_id, device.id
        batch: list[Reading] = []
        answered = False
        failed: tuple[Block, AdapterError] | None = None
        pending = collections.deque(poller.blocks)
        with logs.about(device_id):
            while pending:
                block = pending.popleft()
                try:
                    data = await bus.read(block.table, unit, block.start, block.count)
                except AdapterError as exc:  # DeviceError included
                    self.errors_total += 1
                    if isinstance(exc, ExceptionResponse) and exc.code == ExcCodes.ILLEGAL_ADDRESS and len(block.keys) > 1:
                        # A hole in the device's map inside a coalesced read: read its points one by one
                        # from now on, so that one bad address costs only its own point.
                        parts = self._split(poller, block)
                        self.log.warning("%s; reading its %d points one by one from now on", _detail(exc), len(parts),
                                         extra={"device": device_id})  # fmt: skip
                        pending.extendleft(reversed(parts))
                        continue
                    if not block.bad:
                        self.log.warning("%s", _detail(exc), extra={"device": device_id})
                    block.fail(device_id, time.time(), batch)
                    failed = failed or (block, exc)
                    continue
                answered = True
                if bus.busy:
                    # Let the next request on this line go out first: the device answers it
                    # while this one's values are decoded and passed on.
                    await asyncio.sleep(0)
                block.update(data, device_id, time.time(), batch)
        self.polls_total += 1
        if answered:
            device.failures = 0
            if not device.online:
                device.online = True
                self.set_online(device_id, True)
        if failed is not None:
            # Noted after the device came online (which clears it) and before the batch is
            # published (its good values were read before this failure).
            block, exc = failed
            self.problem(device_id, _reason(block, exc, answered), block.keys[0] if answered else None)
        else:
            self._recovered(device)
        if not answered:
            device.failures += 1
            if device.online and device.failures >= device.config.fail_after:
                device.online = False
                self.set_online(device_id, False)
        if batch:
            self.publish(batch)

    def _recovered(self, device: DeviceRuntime) -> None:
        """Clear the device's problem once none of its reads is failing."""
        known = self.hub.devices.get(device.id)
        if known is not None and known.problem is not None and not any(b.bad for _, b in device.points.values()):
            self.problem(device.id, None)

    def _split(self, poller: Poller, block: Block) -> list[Block]:
        """Replace ``block`` in ``poller`` by one block per point."""
        device = poller.device
        parts = [Block(Read(block.table, p.address, p.width, (p,)), device.config) for p in block.codec.points]
        index = poller.blocks.index(block)
        poller.blocks[index : index + 1] = parts
        for part in parts:
            point = part.codec.points[0]
            device.points[point.key] = (point, part)
        return parts

    # -- writes ----------------------------------------------------------

    async def write(self, command: Command) -> None:
        device = self.devices.get(command.device_id)
        entry = device.points.get(command.key) if device is not None else None
        if device is None or entry is None:
            raise CommandError(f"no such point {command.device_id}.{command.key}")
        point, block = entry
        if not point.writable:
            raise CommandError(f"point {command.device_id}.{command.key} is read-only")
        try:
            encoded = encode(point, command.value)
        except ValueError as exc:
            raise CommandError(f"{command.device_id}.{command.key}: {exc}") from exc
        spec = device.config
        try:
            with logs.about(device.id):
                if point.table is Table.COIL:
                    await device.bus.write_coil(spec.unit_id, point.address, bool(encoded), spec.write_multiple)
                else:
                    await device.bus.write_registers(spec.unit_id, point.address, encoded, spec.write_multiple)  # type: ignore[arg-type]
        except AdapterError as exc:
            self.errors_total += 1
            raise CommandError(str(exc)) from exc
        await self._read_back(device, point, block)

    async def _read_back(self, device: DeviceRuntime, point: PointConfig, block: Block) -> None:
        """Report what the device holds after a write (it may clamp or refuse silently)."""
        try:
            with logs.about(device.id):
                data = await device.bus.read(point.table, device.config.unit_id, point.address, point.width, WRITE)
        except AdapterError as exc:
            self.log.warning("read-back of %s failed: %s", point.key, _detail(exc), extra={"device": device.id})
            return  # the write itself was acknowledged; the next poll reports the value
        value = BlockCodec(point.table, point.address, point.width, (point,)).decode(data)[0]
        now = time.time()
        block.remember(point.key, value, now)
        self.publish([Reading(device.id, point.key, value, now)])
