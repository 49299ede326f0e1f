"""The Hub: the single in-memory truth of the gateway.

It holds the device registry, the last reading of every point (the reported
state of the device shadow), desired values waiting for offline devices, and
fans out reading batches and events to subscribers. Listeners are plain
callables called synchronously with a whole batch; they must be quick and
never block (the outbox queues the batch for its writer thread; the rules
engine looks up the rules that read each point and starts their runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

from edged.errors import CommandError
from edged.model import (
    Command,
    CommandResult,
    CommandStatus,
    Device,
    DeviceAdded,
    DeviceRemoved,
    DeviceStatus,
    Event,
    Problem,
    Quality,
    Reading,
    describe,
)
from edged.tasks import TaskSet

log = logging.getLogger(__name__)
BAD = Quality.BAD

ReadingListener = Callable[[Sequence[Reading]], None]
EventListener = Callable[[Event], None]
DeviceChange = DeviceAdded | DeviceRemoved | DeviceStatus
Writer = Callable[[Command], Awaitable[None]]


class Hub:
    def __init__(self, clock: Callable[[], float] = time.time, command_timeout: float = 10.0) -> None:
        self.clock = clock
        self.command_timeout = command_timeout
        self.devices: dict[str, Device] = {}
        self.values: dict[tuple[str, str], Reading] = {}
        self.desired: dict[tuple[str, str], Command] = {}
        self._reading_listeners: list[ReadingListener] = []
        self._event_listeners: list[EventListener] = []
        self._writers: dict[str, Writer] = {}
        self._tasks = TaskSet()
        self.readings_in = 0

    # -- devices ---------------------------------------------------------

    def add_device(self, device: Device) -> None:
        """Register (or re-register) a device; its last values are kept."""
        known = self.devices.get(device.id)
        if known is not None:
            if known.last_seen and not device.last_seen:
                device.last_seen = known.last_seen
            if device.problem is None:
                device.problem = known.problem
        self.devices[device.id] = device
        self.emit(DeviceAdded(device))

    def remove_device(self, device_id: str) -> None:
        if self.devices.pop(device_id, None) is None:
            return
        for key in [k for k in self.values if k[0] == device_id]:
            del self.values[key]
        self.emit(DeviceRemoved(device_id))

    def set_online(self, device_id: str, online: bool) -> None:
        """A device answers again (which clears its problem), or stopped answering."""
        device = self.devices.get(device_id)
        if device is None or device.online == online:
            return
        device.online = online
        now = self.clock()
        if online:
            device.last_seen = now
            device.problem = None
        if online or device.problem is None:
            log.info("device %s", "online" if online else "offline", extra={"device": device_id})
        else:
            problem = device.problem
            log.info("device offline after %d failures: %s", problem.count, problem.reason, extra={"device": device_id})
        self.emit(DeviceStatus(device_id, online, now))
        if online:
            self._apply_desired(device_id)

    def report_problem(self, device_id: str, reason: str, point: str | None = None) -> Problem | None:
        """Note that ``device_id`` (only its ``point``, when given) failed for ``reason``: one more in its
        run of failures.

        The problem stays until the device recovers: it comes online, sends
        a value that is not bad (of that point) taken after the failure, or
        its adapter says so (``clear_problem``)."""
        device = self.devices.get(device_id)
        if device is None:
            return None
        device.problem = Problem.again(device.problem, reason, self.clock(), point)
        return device.problem

    def clear_problem(self, device_id: str) -> None:
        """``device_id`` works again."""
        device = self.devices.get(device_id)
        if device is not None:
            device.problem = None

    def adapter_devices(self, adapter: str) -> list[Device]:
        return [d for d in self.devices.values() if d.adapter == adapter]

    # -- readings --------------------------------------------------------

    def publish(self, readings: Sequence[Reading]) -> None:
        """Take one batch of readings from an adapter and hand it on.

        A value that is not bad is the device's sign of life (``last_seen``),
        and clears a problem that happened before it was taken."""
        if not readings:
            return
        values = self.values
        devices = self.devices
        last_device = device = None
        looking = False  # for this device's first value that is not bad (or for its failing point's)
        for reading in readings:
            values[(reading.device_id, reading.key)] = reading
            if reading.device_id is not last_device:
                last_device = reading.device_id
                device = devices.get(last_device)
                looking = device is not None
            if looking and reading.quality is not BAD:
                device.last_seen = reading.ts  # type: ignore[union-attr]
                problem = device.problem  # type: ignore[union-attr]
                if problem is not None and reading.ts > problem.last and problem.point in (None, reading.key):
                    device.problem = problem = None  # type: ignore[union-attr]
                looking = problem is not None and problem.point is not None
        self.readings_in += len(readings)
        for listener in self._reading_listeners:
            try:
                listener(readings)
            except Exception:
                log.exception("reading listener %r failed", listener)

    def value(self, device_id: str, key: str) -> Reading | None:
        return self.values.get((device_id, key))

    def subscribe(self, listener: ReadingListener) -> Callable[[], None]:
        """Call ``listener`` with every batch; returns the function that unsubscribes."""
        self._reading_listeners.append(listener)
        return lambda: self._reading_listeners.remove(listener)

    def subscribe_events(self, listener: EventListener) -> Callable[[], None]:
        self._event_listeners.append(listener)
        return lambda: self._event_listeners.remove(listener)

    @contextlib.contextmanager
    def device_changes(self) -> Iterator[asyncio.Queue[DeviceChange]]:
        """The devices' joins, leaves and online changes, queued in order for the length of the block."""
        changes: asyncio.Queue[DeviceChange] = asyncio.Queue()

        def on_event(event: Event) -> None:
            if isinstance(event, (DeviceAdded, DeviceRemoved, DeviceStatus)):
                changes.put_nowait(event)

        unsubscribe = self.subscribe_events(on_event)
        try:
            yield changes
        finally:
            unsubscribe()

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every event listener."""
        for listener in self._event_listeners:
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed", listener)

    # -- commands --------------------------------------------------------

    def attach_writer(self, adapter: str, writer: Writer) -> None:
        """Route commands for devices of ``adapter`` to ``writer``."""
        self._writers[adapter] = writer

    def detach_writer(self, adapter: str) -> None:
        self._writers.pop(adapter, None)

    async def execute(self, command: Command, *, hold_if_offline: bool = False) -> CommandResult:
        """Validate ``command``, pass it to its adapter and report the result.

        A command for an offline device is rejected, or with
        ``hold_if_offline`` kept as desired state and applied when the device
        comes back (the result is then ``pending``).
        """
        try:
            command = self._validate(command)
        except CommandError as exc:
            return self._finish(_echo(command), CommandStatus.REJECTED, str(exc))
        device = self.devices[command.device_id]
        if not device.online:
            if hold_if_offline:
                self.desired[(command.device_id, command.key)] = command
                return self._finish(command, CommandStatus.PENDING, "device offline; held as desired state")
            return self._finish(command, CommandStatus.REJECTED, "device offline")
        writer = self._writers.get(device.adapter)
        if writer is None:
            return self._finish(command, CommandStatus.FAILED, f"adapter {device.adapter!r} is not running")
        try:
            async with asyncio.timeout(self.command_timeout):
                await writer(command)
        except TimeoutError:
            return self._finish(command, CommandStatus.TIMEOUT, f"no answer within {self.command_timeout:g} s")
        except CommandError as exc:
            return self._finish(command, CommandStatus.FAILED, str(exc))
        except Exception as exc:
            log.exception("write to %s failed", command.key, extra={"device": command.device_id})
            return self._finish(command, CommandStatus.FAILED, f"{type(exc).__name__}: {exc}")
        self.desired.pop((command.device_id, command.key), None)
        return self._finish(command, CommandStatus.OK, None)

    def check(self, command: Command) -> str | None:
        """Why ``execute`` would reject ``command`` (unknown device or point,
        read-only point, a value the point cannot take), or None."""
        try:
            self._validate(command)
        except CommandError as exc:
            return str(exc)
        return None

    def _validate(self, command: Command) -> Command:
        device = self.devices.get(command.device_id)
        if device is None:
            raise CommandError(f"unknown device {describe(command.device_id)}")
        point = device.points.get(command.key)
        if point is None:
            raise CommandError(f"device {command.device_id!r} has no point {describe(command.key)}")
        if not point.writable:
            raise CommandError(f"point {command.device_id}.{command.key} is read-only")
        try:
            value = point.type.coerce(command.value)
        except ValueError as exc:
            raise CommandError(f"{command.device_id}.{command.key}: {exc}") from exc
        return command if value == command.value and type(value) is type(command.value) else dataclasses.replace(command, value=value)

    def _finish(self, command: Command, status: CommandStatus, reason: str | None) -> CommandResult:
        result = CommandResult(command, status, reason, self.clock())
        if status is not CommandStatus.OK and status is not CommandStatus.PENDING:
            log.warning(
                "command %s %s=%r from %s: %s: %s", command.id, command.key, command.value, command.origin, status, reason,
                extra={"device": command.device_id},
            )
        self.emit(result)
        return result

    def _apply_desired(self, device_id: str) -> None:
        for key, command in list(self.desired.items()):
            if key[0] == device_id:
                self._tasks.spawn(self.execute(command, hold_if_offline=True), name=f"desired {key}")

    async def close(self) -> None:
        await self._tasks.close()


ECHO_TEXT = 256  # characters of a rejected text value repeated in its result


def _echo(command: Command) -> Command:
    """``command`` as its rejection repeats it: a value that is not plain JSON
    (not finite, an integer beyond 64 bits, not valid Unicode, long text) is
    repeated as None; the reason says what it was."""
    value = command.value
    if value is None or isinstance(value, bool):
        return command
    if isinstance(value, float):
        safe = math.isfinite(value)
    elif isinstance(value, int):
        safe = -(2**64) <= value < 2**64
    elif isinstance(value, str):
        safe = len(value) <= ECHO_TEXT and not any("\ud800" <= char <= "\udfff" for char in value)
    else:
        safe = False
    return command if safe else dataclasses.replace(command, value=None)
