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
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from edged.fields import Model
from edged.hub import Hub
from edged.model import Command, Device, Reading
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


class Adapter(abc.ABC, Generic[C]):
    config_model: ClassVar[type[AdapterConfig]]

    def __init__(self, config: C, hub: Hub, state_dir: Path) -> None:
        self.config = config
        self.hub = hub
        self.name = config.instance
        self.state_dir = state_dir
        self.log = logging.getLogger(f"edged.adapters.{self.name}")
        self.tasks = TaskSet()
        self.state = "stopped"
        # Counters read by the metrics endpoint; subclasses count errors and reconnects.
        self.readings_total = 0
        self.errors_total = 0
        self.reconnects_total = 0

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin talking to devices; return once the work is under way."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Release every connection and resource; never raise."""

    @abc.abstractmethod
    async def write(self, command: Command) -> None:
        """Set ``command.key`` of ``command.device_id``; raise ``CommandError`` if not done."""

    # -- helpers for subclasses ------------------------------------------

    def device_id(self, native_id: str) -> str:
        return f"{self.name}/{native_id}"

    def add_device(self, device: Device) -> None:
        self.hub.add_device(device)

    def publish(self, readings: Sequence[Reading]) -> None:
        """The one path by which values enter the gateway."""
        self.readings_total += len(readings)
        self.hub.publish(readings)

    def set_online(self, device_id: str, online: bool) -> None:
        self.hub.set_online(device_id, online)

    # -- lifecycle -------------------------------------------------------

    async def run(self) -> None:
        """Start, then wait until a task fails (raised) or until cancelled."""
        self.state = "starting"
        self.hub.attach_writer(self.name, self.write)
        try:
            await self.start()
            self.state = "running"
            await self.tasks.wait_failure()
        finally:
            self.state = "stopped"
            self.hub.detach_writer(self.name)
            await self.tasks.close()
            await self.stop()
            for device in self.hub.adapter_devices(self.name):
                self.hub.set_online(device.id, False)
