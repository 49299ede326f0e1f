"""The gateway's uplinks: one outbox, fed once from the Hub, drained by every configured uplink.

``Uplinks`` is the daemon's "uplink" unit. Its ``run()`` opens the outbox,
takes every reading batch and event from the Hub into it (once: a reading is
one row however many uplinks there are), and runs one ``UplinkService`` per
configured uplink, each over its own lane of the outbox, in one TaskGroup. Each
service reconnects by itself for ever, so one cloud that is down (or a link
that fails) never holds back the others' live data. Cancelling ``run()``
stops the services and commits every reading already handed over before it
returns.

Readings and events (device status, rule events, device events such as
alarms) go to every uplink; the result of a cloud command goes back only to
the uplink whose cloud sent it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import Command, CommandResult, DeviceEvent, DeviceStatus, Event, RuleEvent
from edged.outbox import DEFAULT_LANE, Outbox, OutboxConfig
from edged.tasks import wait_until
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService

log = logging.getLogger(__name__)

COMMANDS_REMEMBERED = 10_000  # commands under way whose result goes back to the uplink they came from


class Uplinks:
    """One outbox and the uplinks it feeds; built by ``build`` from the configuration."""

    name = "uplinks"

    def __init__(self, outbox: Outbox, services: list[UplinkService], hub: Hub) -> None:
        self.outbox = outbox
        self.services = {service.name: service for service in services}
        self.hub = hub
        self._changed = asyncio.Event()
        self._listening: list[Callable[[], None]] = []
        self._origins: dict[int, tuple[Command, str]] = {}  # id(command) -> (command, the uplink it came from)
        for service in services:
            service.uplinks = self
        outbox.subscribe(lambda rows: self.changed())

    @classmethod
    def build(cls, outbox_config: OutboxConfig, configs: Mapping[str, UplinkConfig], hub: Hub, state_dir: Path,
              gateway_id: str, backoff: Backoff | None = None) -> Uplinks:  # fmt: skip
        """The uplinks ``configs`` names (in that order), over one outbox."""
        outbox = Outbox(outbox_config, state_dir)
        services = [UplinkService(outbox.lane(name), config, hub, state_dir, gateway_id, backoff, name=name)
                    for name, config in configs.items()]  # fmt: skip
        return cls(outbox, services, hub)

    def listen(self) -> None:
        """Take the Hub's readings and events from now on (into memory until the outbox opens).
        Called by ``run()``, or earlier by a reload that hands over from running uplinks."""
        if not self._listening:
            self._listening = [self.hub.subscribe(self.outbox.put), self.hub.subscribe_events(self._on_event)]

    def stop_listening(self) -> None:
        """Take no more readings (the rest of what was taken is committed by ``run()``'s end)."""
        for stop in self._listening:
            stop()
        self._listening = []

    async def run(self) -> None:
        self.listen()
        try:
            await self._open_outbox()
            self.changed()
            async with asyncio.TaskGroup() as group:  # each service retries by itself: none ends the others
                for name, service in self.services.items():
                    group.create_task(service.serve(), name=f"uplink {name}")
        finally:
            self.stop_listening()
            await self.outbox.close()  # commits everything handed over (the SIGTERM path)

    async def _open_outbox(self) -> None:
        """Open the outbox, trying again with backoff while it cannot be (``open_error`` says why)."""
        backoff = Backoff(initial=0.5, maximum=30.0)
        while True:
            try:
                await self.outbox.open()
                return
            except (OSError, sqlite3.Error) as exc:
                delay = backoff.next_delay()
                log.error("outbox cannot open (%s); readings wait in memory; trying again in %.1f s", exc, delay)
                self.changed()
                await asyncio.sleep(delay)

    def changed(self) -> None:
        """A figure of the outbox changed: wake whoever waits on it or on any uplink."""
        self.wake()
        for service in self.services.values():
            service.wake()

    def wake(self) -> None:
        """Wake whoever waits on ``wait_for`` to check again."""
        self._changed.set()

    # -- commands and events ---------------------------------------------

    def took(self, command: Command, uplink: str) -> None:
        """A command from ``uplink``'s cloud is being executed: its result goes back there."""
        self._origins[id(command)] = (command, uplink)
        if len(self._origins) > COMMANDS_REMEMBERED:
            del self._origins[next(iter(self._origins))]

    def _on_event(self, event: Event) -> None:
        outbox = self.outbox
        if isinstance(event, CommandResult):
            command = event.command
            origin = self._origins.pop(id(command), None)
            outbox.put_event(
                "command_result",
                {
                    "id": command.id,
                    "device": command.device_id,
                    "point": command.key,
                    "value": command.value,
                    "origin": command.origin,
                    "status": event.status,
                    "reason": event.reason,
                    "ts": event.ts,
                },
                uplink=origin[1] if origin is not None and origin[0] is command else None,
            )
        elif isinstance(event, DeviceStatus):
            outbox.put_event("device_status", {"device": event.device_id, "online": event.online, "ts": event.ts})
        elif isinstance(event, RuleEvent):
            outbox.put_event("rule", {"rule": event.rule_id, "name": event.name, "data": event.data, "ts": event.ts})
        elif isinstance(event, DeviceEvent):
            outbox.put_event("device_event", {
                "device": event.device_id, "name": event.name, "severity": event.severity,
                "message": event.message, "data": event.data, "ts": event.ts,
            })  # fmt: skip

    # -- what the rest of the gateway sees ---------------------------------

    @property
    def connected(self) -> bool:
        """True while every uplink is connected."""
        return all(service.connected for service in self.services.values())

    async def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Return once ``predicate()`` is true; checked again after every outbox
        commit (new readings, acks) and every connection change of any uplink."""
        await wait_until(self._changed, predicate, timeout)


def single(outbox_config: OutboxConfig, uplink_config: UplinkConfig, hub: Hub, state_dir: Path, gateway_id: str,
           backoff: Backoff | None = None) -> UplinkService:  # fmt: skip
    """A gateway's one uplink with an outbox of its own: its ``run()`` opens the outbox and
    feeds it from the Hub, as the daemon's uplink unit does."""
    uplinks = Uplinks.build(outbox_config, {DEFAULT_LANE: uplink_config}, hub, state_dir, gateway_id, backoff)
    service = uplinks.services[DEFAULT_LANE]
    service.alone = True
    return service
