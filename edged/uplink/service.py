"""The uplink service the daemon runs: Hub -> Outbox -> cloud, and cloud commands -> Hub.

``UplinkService.run()`` opens the outbox, takes every reading batch and
event from the Hub into it, and keeps one connection to the cloud alive
(reconnecting for ever with backoff and jitter) over which a ``Sender``
drains the outbox and cloud commands come in. The connection is a ``Link``
of the configured ``type`` (see ``edged.uplink.link``). Cancelling
``run()`` commits every reading already handed over before it returns.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.backoff import Backoff, retry_forever
from edged.errors import Refused, UplinkError
from edged.hub import Hub
from edged.model import Command, CommandResult, DeviceStatus, Event, Origin, RuleEvent
from edged.outbox import Outbox, OutboxConfig
from edged.part import State, counter, gauge
from edged.tasks import TaskSet
from edged.uplink.commands import Rejected, RejectionLimit
from edged.uplink.config import UplinkConfig
from edged.uplink.link import Link, LinkContext, link_class
from edged.uplink.sender import Refusals, Sender

log = logging.getLogger(__name__)

HEALTH_DOWN = 300.0  # seconds without a cloud connection that count as a problem


@dataclass
class UplinkStats:
    connected: int = gauge("edged_uplink_connected", "1 while the uplink is connected to the cloud")
    acked: int = counter("edged_uplink_acked", "Readings the cloud acknowledged")
    acked_live: int = counter("edged_uplink_acked_live", "Readings the cloud acknowledged as they came")
    acked_backlog: int = counter("edged_uplink_acked_backlog", "Readings the cloud acknowledged from the stored backlog")
    reconnects: int = counter("edged_uplink_reconnects", "Connections to the cloud lost or refused")
    commands_repeated: int = counter("edged_uplink_commands_repeated", "Cloud commands shown again and not run twice")
    commands_dropped: int = counter("edged_uplink_commands_dropped", "Refused cloud commands beyond the answer rate, not answered")
    refused: dict[str, int] = counter("edged_uplink_refused", "Messages the cloud refused, by reason", label="reason")
    delivered: dict[str, int] = counter(
        "edged_adapter_readings_delivered", "Readings of an adapter the cloud acknowledged", label="adapter"
    )


class UplinkService:
    def __init__(
        self,
        outbox_config: OutboxConfig,
        uplink_config: UplinkConfig,
        hub: Hub,
        state_dir: Path,
        gateway_id: str,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = uplink_config
        self.name = "uplink"
        self.hub = hub
        self.gateway_id = gateway_id
        self.outbox = Outbox(outbox_config, state_dir)
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self._changed = asyncio.Event()
        context = LinkContext(gateway_id, state_dir, hub, self._changed.set)
        self.link: Link = link_class(uplink_config.type, uplink_config.profile)(uplink_config, context)
        self._commands = TaskSet()
        self._sender: Sender | None = None
        self._ended_with: tuple[dict[int, Any], int | None] = ({}, None)  # rows in flight when the last sender stopped
        self._sent = [0, 0]  # live, backlog readings of past connections
        self._listening: list[Callable[[], None]] = []
        self.refusals = Refusals(uplink_config.max_attempts)
        self.delivered: Counter[str] = Counter()  # readings the cloud acknowledged, by adapter
        # Figures for metrics (see also ``stats()``).
        self.connected = False
        self.reconnects = 0
        self.rejections = RejectionLimit()  # answers to refused commands: 10/s, 50 at once; beyond, counted
        self._down_since: float | None = None  # monotonic time the link was last lost (or first tried)

    def listen(self) -> None:
        """Take the Hub's readings and events from now on (into memory until the outbox opens).
        Called by ``run()``, or earlier by a reload that hands over from a running uplink."""
        if not self._listening:
            self._listening = [
                self.hub.subscribe(self.outbox.put),
                self.hub.subscribe_events(self._on_event),
                self.outbox.subscribe(lambda rows: self._changed.set()),
            ]

    def stop_listening(self) -> None:
        """Take no more readings (the rest of what was taken is committed by ``run()``'s end)."""
        for stop in self._listening:
            stop()
        self._listening = []

    async def run(self) -> None:
        self._down_since = time.monotonic()
        self.listen()
        try:
            await self._open_outbox()
            self._changed.set()
            await retry_forever(
                f"uplink {self.config.type}", self._session, log, self.backoff, on_failure=self._on_failure
            )
        finally:
            self.stop_listening()
            await self._commands.close()
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
                self._changed.set()
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        async with self.link.connect():
            self.connected = True
            self._down_since = None
            self._changed.set()
            try:
                await _first_failure([self._send_all(), self._take_commands()])
            except UplinkError:
                self.refusals.lost(*self._ended_with)
                raise
            finally:
                self.connected = False
                self._down_since = time.monotonic()
                self._changed.set()

    async def _send_all(self) -> None:
        """Drain the outbox over the connection. After a refusal that may pass, start over from
        the outbox after the backoff delay, on the same connection (commands keep coming)."""
        while True:
            sender = Sender(self.outbox, self.link.send, self.config.inflight, self.config.backfill_rate, self.delivered,
                            self.refusals, self.backoff)  # fmt: skip
            self._sender = sender
            try:
                await sender.run()
            except Refused:
                await asyncio.sleep(self.backoff.next_delay())
            finally:
                self._sender = None
                self._ended_with = sender.ended_with
                self._sent[0] += sender.sent_live
                self._sent[1] += sender.sent_backlog

    def _on_failure(self, exc: BaseException) -> None:
        self.reconnects += 1
        self._changed.set()

    # -- cloud commands --------------------------------------------------

    async def _take_commands(self) -> None:
        async for message in self.link.commands():
            self._on_command(message)

    def _on_command(self, message: Command | Rejected) -> None:
        """Execute a command; answer one that is refused, at most at the rate ``rejections`` allows."""
        if isinstance(message, Command):
            # The Hub rejects what it cannot execute (and tells the rules); beyond the rate it is only counted.
            if self.hub.check(message) is None or self.rejections.allow():
                self._commands.spawn(self.hub.execute(message, hold_if_offline=True), name=f"command {message.id}")
            else:
                self._changed.set()
            return
        if not self.rejections.allow():
            self._changed.set()
            return
        log.warning("cloud command %r rejected: %s", message.raw_id, message.reason)
        self.outbox.put_event(
            "command_result", {"id": message.raw_id, "origin": Origin.CLOUD, "status": "rejected", "reason": message.reason}
        )

    # -- events ----------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, CommandResult):
            command = event.command
            self.outbox.put_event(
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
            )
        elif isinstance(event, DeviceStatus):
            self.outbox.put_event("device_status", {"device": event.device_id, "online": event.online, "ts": event.ts})
        elif isinstance(event, RuleEvent):
            self.outbox.put_event(
                "rule", {"rule": event.rule_id, "name": event.name, "data": event.data, "ts": event.ts}
            )

    async def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Return once ``predicate()`` is true; checked again after every outbox
        commit (new readings, acks) and every connection change."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # -- what the rest of the gateway sees ---------------------------------

    @property
    def state(self) -> State:
        return State.RUNNING if self.connected else State.STARTING

    def health_problems(self) -> list[str]:
        """A cloud gone too long (the outbox says its own problems)."""
        problems = []
        if self._down_since is not None and time.monotonic() - self._down_since >= HEALTH_DOWN:
            problems.append(f"uplink down for {time.monotonic() - self._down_since:.0f} s")
        return problems

    def stats(self) -> UplinkStats:
        live, backlog = self._sent
        if self._sender is not None:
            live += self._sender.sent_live
            backlog += self._sender.sent_backlog
        return UplinkStats(
            connected=int(self.connected),
            acked=live + backlog,
            acked_live=live,
            acked_backlog=backlog,
            reconnects=self.reconnects,
            commands_repeated=self.link.commands_repeated,
            commands_dropped=self.rejections.dropped,
            refused=dict(self.refusals.by_reason),
            delivered=dict(self.delivered),
        )


async def _first_failure(jobs: list[Awaitable[None]]) -> None:
    """Run ``jobs`` together until one ends; cancel the rest and re-raise its error."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()
