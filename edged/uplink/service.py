"""One uplink: its connection to the cloud, its sender, its backoff, its cloud's refusals and commands.

``UplinkService.serve()`` keeps one connection to the cloud alive
(reconnecting for ever with backoff and jitter) over which a ``Sender``
drains the uplink's lane of the outbox and cloud commands come in. The
connection is a ``Link`` of the configured ``type`` (see
``edged.uplink.link``). The outbox, and taking the Hub's readings and events
into it, belong to ``edged.uplink.uplinks.Uplinks``, which runs one service
per configured uplink.

What feeds the lane is the service's ``feed`` (an ``Uplinks``). A service
made by ``edged.uplink.uplinks.single`` is a gateway's one uplink on its
own: its ``run()`` runs its feed (opens the outbox, takes the Hub's readings
into it); cancelling it commits every reading already handed over before it
returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from edged.backoff import Backoff, retry_forever
from edged.errors import Refused, UplinkError
from edged.hub import Hub
from edged.model import Command, Origin, Problem
from edged.outbox import DEFAULT_LANE, Lane, Outbox
from edged.part import State, counter, gauge
from edged.tasks import TaskSet, wait_until
from edged.uplink.commands import GatewayRequest, Rejected, RejectionLimit
from edged.uplink.config import UplinkConfig
from edged.uplink.failures import connection_failure, release
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
    waiting: int = gauge("edged_uplink_waiting_readings", "Readings stored in the outbox that this uplink has yet to deliver")
    dead_letters: int = gauge(
        "edged_uplink_dead_letters_readings", "Readings this uplink's cloud refused for good, held in the dead letters"
    )
    lost: dict[str, int] = counter(
        "edged_uplink_lost", "Readings this uplink will never deliver, by reason (full, expired, discarded)", label="reason"
    )


class Feed(Protocol):
    """What fills an uplink's lane of the outbox from the Hub (``edged.uplink.uplinks.Uplinks``)."""

    def listen(self) -> None: ...

    def stop_listening(self) -> None: ...

    async def run(self) -> None: ...

    def wake(self) -> None:
        """A figure of an uplink changed: wake whoever waits for one."""

    def took(self, command: Command, uplink: str) -> None:
        """``uplink``'s cloud sent ``command``: its result goes back there."""


class UplinkService:
    """One uplink, named ``name`` (its label in metrics), draining its lane of the outbox."""

    def __init__(
        self,
        lane: Lane,
        uplink_config: UplinkConfig,
        hub: Hub,
        state_dir: Path,
        gateway_id: str,
        backoff: Backoff | None = None,
        name: str = DEFAULT_LANE,
    ) -> None:
        self.config = uplink_config
        self.name = name
        self.hub = hub
        self.gateway_id = gateway_id
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self._changed = asyncio.Event()
        self.uplinks: Feed | None = None  # what feeds this uplink's lane (set by ``Uplinks``)
        self.alone = False  # the gateway's one uplink, whose run() runs its feed too
        self.lane = lane
        self.outbox: Outbox = lane.outbox
        context = LinkContext(gateway_id, state_dir, hub, self._figure_changed)
        self.link: Link = link_class(uplink_config.type, uplink_config.profile)(uplink_config, context)
        self._commands = TaskSet()
        self._sender: Sender | None = None
        self._ended_with: tuple[dict[int, Any], int | None] = ({}, None)  # rows in flight when the last sender stopped
        self._sent = [0, 0]  # live, backlog readings of past connections
        self.refusals = Refusals(uplink_config.max_attempts)
        self.delivered: Counter[str] = Counter()  # readings the cloud acknowledged, by adapter
        # Figures for metrics (see also ``stats()``).
        self.connected = False
        self.reconnects = 0
        self.rejections = RejectionLimit()  # answers to refused commands: 10/s, 50 at once; beyond, counted
        self._down_since: float | None = time.monotonic()  # monotonic time the link was last lost (or first tried)
        self.last_problem: Problem | None = None  # why the connection last failed, until it is up again
        # fleet: takes the messages to the gateway itself (with this uplink's name); set by the daemon
        self.gateway: Callable[[GatewayRequest, str], None] | None = None

    @property
    def title(self) -> str:
        """How logs and health name this uplink: "uplink", or "uplink <name>" for one of several."""
        return "uplink" if self.name == DEFAULT_LANE else f"uplink {self.name}"

    def listen(self) -> None:
        """Take the Hub's readings and events from now on (see ``Uplinks.listen``)."""
        assert self.uplinks is not None
        self.uplinks.listen()

    def stop_listening(self) -> None:
        assert self.uplinks is not None
        self.uplinks.stop_listening()

    async def run(self) -> None:
        """The gateway's one uplink with its own outbox: ``Uplinks.run()``; a lane's: ``serve()``."""
        if self.alone and self.uplinks is not None:
            await self.uplinks.run()
        else:
            await self.serve()

    async def serve(self) -> None:
        """Keep the connection to the cloud (the outbox is open), until cancelled."""
        self._down_since = time.monotonic()
        try:
            what = f"uplink {self.config.type}" if self.name == DEFAULT_LANE else f"{self.title} ({self.config.type})"
            await retry_forever(what, self._session, log, self.backoff, on_failure=self._on_failure)
        finally:
            await self._commands.close()

    def wake(self) -> None:
        """Wake whoever waits on ``wait_for`` to check again."""
        self._changed.set()

    def _figure_changed(self) -> None:
        self._changed.set()
        if self.uplinks is not None:
            self.uplinks.wake()

    async def _session(self) -> None:
        """One connection, from connecting to its failure (noted as ``last_problem``).

        A connection clears the problem; one that fails before the cloud
        took anything over it (a CoAP server reached only with the first
        message, whose DTLS handshake fails) goes on with the same run of
        failures."""
        held: Problem | None = None
        acked = self._acked()
        try:
            async with self.link.connect():
                held, self.last_problem = self.last_problem, None
                acked = self._acked()
                await self._connection()
        except Exception as exc:
            previous = self.last_problem or (held if self._acked() == acked else None)
            self.last_problem = Problem.again(previous, await connection_failure(exc, self.config), time.time())
            release(exc)
            raise

    def _acked(self) -> int:
        """Readings the cloud acknowledged over every connection so far."""
        return sum(self._sent) + (self._sender.sent_live + self._sender.sent_backlog if self._sender is not None else 0)

    async def _connection(self) -> None:
        """Send and take commands over the connection until it fails."""
        self.connected = True
        self._down_since = None
        self._figure_changed()
        try:
            await _first_failure([self._send_all(), self._take_commands()])
        except UplinkError:
            self.refusals.lost(*self._ended_with)
            raise
        finally:
            self.connected = False
            self._down_since = time.monotonic()
            self._figure_changed()

    async def _send_all(self) -> None:
        """Drain this uplink's lane over the connection. After a refusal that may pass, start over
        from the outbox after the backoff delay, on the same connection (commands keep coming)."""
        while True:
            sender = Sender(self.lane, self.link.send, self.config.inflight, self.config.backfill_rate, self.delivered,
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
        self._figure_changed()

    # -- cloud commands --------------------------------------------------

    async def _take_commands(self) -> None:
        async for message in self.link.commands():
            self._on_command(message)

    def _on_command(self, message: Command | GatewayRequest | Rejected) -> None:
        """Execute a command; answer one that is refused, at most at the rate ``rejections`` allows."""
        if isinstance(message, GatewayRequest):  # fleet: an operation on the gateway itself
            if self.gateway is not None:
                self.gateway(message, self.name)
                return
            message = Rejected(message.raw_id, "this gateway takes no remote operations (remote_config.enabled is false)")
        if isinstance(message, Command):
            # The Hub rejects what it cannot execute (and tells the rules); beyond the rate it is only counted.
            if self.hub.check(message) is None or self.rejections.allow():
                if self.uplinks is not None:
                    self.uplinks.took(message, self.name)  # its result comes back to this uplink
                self._commands.spawn(self.hub.execute(message, hold_if_offline=True), name=f"command {message.id}")
            else:
                self._figure_changed()
            return
        if not self.rejections.allow():
            self._figure_changed()
            return
        log.warning("%s: cloud command %r rejected: %s", self.title, message.raw_id, message.reason)
        self.outbox.put_event(
            "command_result",
            {"id": message.raw_id, "origin": Origin.CLOUD, "status": "rejected", "reason": message.reason},
            uplink=self.name,
        )

    async def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Return once ``predicate()`` is true; checked again after every outbox
        commit (new readings, acks) and every connection change of this uplink."""
        await wait_until(self._changed, predicate, timeout)

    # -- what the rest of the gateway sees ---------------------------------

    @property
    def state(self) -> State:
        return State.RUNNING if self.connected else State.STARTING

    def health_problems(self) -> list[str]:
        """A cloud gone too long (the outbox says its own problems)."""
        problems = []
        if self._down_since is not None and time.monotonic() - self._down_since >= HEALTH_DOWN:
            problems.append(f"{self.title} down for {time.monotonic() - self._down_since:.0f} s")
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
            waiting=self.lane.depth,
            dead_letters=self.lane.dead_letters,
            lost={"full": self.lane.dropped_full, "expired": self.lane.expired, "discarded": self.lane.discarded},
        )

    @property
    def labels(self) -> dict[str, str]:
        """The labels of this uplink's metrics."""
        return {"uplink": self.name}


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
