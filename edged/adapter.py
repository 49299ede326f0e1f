"""The contract every protocol adapter implements.

An adapter owns its connections, polling and reconnection for one protocol
instance. It turns protocol data into ``Reading`` batches handed to
``publish`` and carries out ``Command`` writes. It knows nothing of rules,
the outbox or the uplink.

Subclasses implement three coroutines:

- ``start()``: begin work (connect, spawn polling tasks in ``self.tasks``)
  and return; failing to reach a device is not a failure to start.
- ``stop()``: release every connection; never raises.
- ``write(command)``: set one point; raise ``CommandError`` with the reason.

``run()`` (used by the daemon's supervisor) starts the adapter, watches its
tasks and stops it when one of them fails or when it is cancelled.

An adapter is a *part* (``edged.part``): it has a ``state``, may say what is
wrong with it in ``health_problems()`` and gives its figures in ``stats()``.
Operations that do not fit a point write (letting Zigbee devices join,
removing one) are ``Route``s the adapter's registry entry names: the status
API serves them under ``/api/adapters/{instance}/{path}``.

Why a device fails is told with ``problem(device_id, reason)``: a short
reason people read (``exception 11: gateway target failed to respond``,
``no answer within 0.5 s``). The Hub keeps it with when the failures began
and how many there were, and shows it until the device recovers: it comes
online, sends a value that is not bad taken after the failure, or the
adapter calls ``problem(device_id, None)``. A problem of one point
(``problem(device_id, reason, point)``) is cleared only by a value of that
point. ``connection_problem(reason)`` does the same for what the adapter
itself cannot reach (a serial port, a server, a radio). Code that talks to
a device runs inside ``edged.logs.about(device_id)``, so that a protocol
library's lines there name the device and its errors are not repeated.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from edged.errors import AdapterError
from edged.fields import Model
from edged.hub import Hub
from edged.model import Command, Device, DeviceEvent, Problem, Reading
from edged.part import State, counter
from edged.tasks import TaskSet


class AdapterConfig(Model):
    """Fields every adapter has; each adapter extends this next to its code."""

    type: str
    name: str = ""  # defaults to ``type``; device ids are ``<name>/<native id>``

    @property
    def instance(self) -> str:
        return self.name or self.type

    def declared_points(self) -> dict[str, dict[str, bool]] | None:
        """``{device id: {point key: writable}}`` when the configuration names
        every device and point of this adapter; None when devices appear at
        run time (Zigbee joins, BLE advertisers)."""
        return None

    def advice(self) -> list[str]:
        """Warnings for ``edged check-config``: valid settings that could be safer, as ``key.path: text``."""
        return []


C = TypeVar("C", bound=AdapterConfig)

JSON = dict[str, Any]


@dataclass
class AdapterStats:
    """What every adapter counts; an adapter with more to say extends it."""

    readings: int = counter("edged_adapter_readings", "Readings an adapter published")
    errors: int = counter("edged_adapter_errors", "Errors talking to devices")
    reconnects: int = counter("edged_adapter_reconnects", "Reconnection attempts")


class RouteError(Exception):
    """A route's request cannot be done: ``status`` is the HTTP status, ``str(exc)`` the reason."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


@dataclass(frozen=True)
class Route:
    """An operation an adapter adds to the status API: ``method`` ``/api/adapters/{instance}/{path}``.

    ``handle(adapter, body)`` gets the running adapter and the request's JSON
    object (for GET, its query parameters) and returns the JSON answer, or
    raises ``RouteError``. ``alias`` is an older path of the same operation,
    served for every running adapter of the type at once by ``handle_all``
    (the adapters, the body) when it is given."""

    method: Literal["GET", "POST"]
    path: str
    handle: Callable[[Any, JSON], Awaitable[JSON]]
    alias: str | None = None
    handle_all: Callable[[list[Any], JSON], Awaitable[JSON]] | None = None


class Adapter(abc.ABC, Generic[C]):
    config_model: ClassVar[type[AdapterConfig]]

    def __init__(self, config: C, hub: Hub, state_dir: Path) -> None:
        self.config = config
        self.hub = hub
        self.name = config.instance
        self.state_dir = state_dir
        self.log = logging.getLogger(f"edged.adapters.{self.name}")
        self.tasks = TaskSet()
        self.state = State.STOPPED
        # Counters read by the metrics endpoint; subclasses count errors and reconnects.
        self.readings_total = 0
        self.errors_total = 0
        self.reconnects_total = 0
        self.last_problem: Problem | None = None  # see ``connection_problem``

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin talking to devices; return once the work is under way."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release every connection and resource; never raise."""

    @abc.abstractmethod
    async def write(self, command: Command) -> None:
        """Set ``command.key`` of ``command.device_id``; raise ``CommandError`` if not done."""

    # -- what the rest of the gateway sees ---------------------------------

    @property
    def labels(self) -> dict[str, str]:
        return {"adapter": self.name}

    def health_problems(self) -> list[str]:
        """Why the adapter needs attention beyond its state (a certificate mismatch, ...)."""
        return []

    def stats(self) -> AdapterStats:
        return AdapterStats(self.readings_total, self.errors_total, self.reconnects_total)

    # -- helpers for subclasses ------------------------------------------

    def device_id(self, native_id: str) -> str:
        return f"{self.name}/{native_id}"

    def add_device(self, device: Device) -> None:
        self.hub.add_device(device)

    def publish(self, readings: Sequence[Reading]) -> None:
        """The one path by which values enter the gateway."""
        self.readings_total += len(readings)
        self.hub.publish(readings)

    def emit_event(self, event: DeviceEvent) -> None:
        """Tell the gateway what a device reported that is not a value (an alarm):
        it goes to every uplink and to rules with a ``device_event`` trigger."""
        self.hub.emit(event)

    def set_online(self, device_id: str, online: bool) -> None:
        """A device answers (which clears its problem), or stopped answering."""
        self.hub.set_online(device_id, online)

    def problem(self, device_id: str, reason: str | None, point: str | None = None) -> None:
        """``device_id`` failed for ``reason`` (one more time), only its ``point`` when given;
        None: it works again."""
        if reason is None:
            self.hub.clear_problem(device_id)
        else:
            self.hub.report_problem(device_id, reason, point)

    def connection_problem(self, reason: str | None) -> None:
        """The adapter cannot reach what its devices sit behind, for ``reason``; None: it can again."""
        self.last_problem = None if reason is None else Problem.again(self.last_problem, reason, self.hub.clock())

    # -- lifecycle -------------------------------------------------------

    async def run(self) -> None:
        """Start, then wait until a task fails (raised) or until cancelled."""
        self.state = State.STARTING
        self.hub.attach_writer(self.name, self.write)
        try:
            await self.start()
            self.state = State.RUNNING
            await self.tasks.wait_failure()
        except AdapterError:
            self.state = State.FAILED
            raise
        finally:
            if self.state is not State.FAILED:
                self.state = State.STOPPED
            self.hub.detach_writer(self.name)
            await self.tasks.close()
            await self.stop()
            for device in self.hub.adapter_devices(self.name):
                self.hub.set_online(device.id, False)
