"""The gateway as its observers see it: the Hub, the running parts, uptime and loop lag.

The daemon keeps one ``GatewayView`` up to date as parts start and stop and
hands it to the HTTP and CoAP status servers and the metrics collector.
They read it and never change it; none of them knows the daemon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edged.part import Part, State, counter, gauge

if TYPE_CHECKING:
    from edged.adapter import Adapter
    from edged.hub import Hub
    from edged.outbox import Outbox
    from edged.rules.engine import RulesEngine
    from edged.uplink.uplinks import Uplinks

LOOP_LAG_LIMIT = 2.0  # seconds of event-loop lag after which the gateway reports itself unhealthy


@dataclass
class GatewayStats:
    uptime: float = gauge("edged_uptime_seconds", "Seconds since the daemon started")
    loop_lag: float = gauge("edged_event_loop_lag_seconds", "How late the event loop woke a 1 s timer, last measured")
    clock_synced: int = gauge(
        "edged_clock_synced", "1 when the system clock is synchronised (or trusted); 0 marks stored readings unsynced"
    )
    readings_in: int = counter("edged_readings_in", "Readings that entered the Hub")


@dataclass
class GatewayView:
    gateway_id: str
    hub: Hub
    adapters: dict[str, Adapter] = field(default_factory=dict)  # by instance name, while their unit runs
    uplink: Uplinks | None = None  # the outbox and the uplinks it feeds
    rules: RulesEngine | None = None
    started_at: float = field(default_factory=time.monotonic)  # on a clock that a time sync does not step
    loop_lag: float = 0.0
    clock_synced: bool = True
    config: dict[str, str] | None = None  # the running configuration's id and hash

    @property
    def outbox(self) -> Outbox | None:
        """The uplinks' outbox, while it is open."""
        if self.uplink is None or not self.uplink.outbox.is_open:
            return None
        return self.uplink.outbox

    def parts(self) -> list[Part]:
        """Every running part: the adapters, then each uplink and their outbox, then the rules engine."""
        parts: list[Part] = list(self.adapters.values())
        if self.uplink is not None:
            parts += [*self.uplink.services.values(), self.uplink.outbox]
        if self.rules is not None:
            parts.append(self.rules)
        return parts

    def health_problems(self) -> list[str]:
        """Why the gateway is unhealthy; empty when it is healthy."""
        problems = []
        if self.loop_lag >= LOOP_LAG_LIMIT:
            problems.append(f"event loop lags {self.loop_lag:.1f} s")
        for name, adapter in list(self.adapters.items()):
            if adapter.state not in (State.RUNNING, State.STARTING):
                problems.append(f"adapter {name} is {adapter.state}")
        for part in self.parts():
            problems.extend(part.health_problems())
        return problems

    def stats(self) -> GatewayStats:
        return GatewayStats(round(time.monotonic() - self.started_at, 1), round(self.loop_lag, 4), int(self.clock_synced),
                            self.hub.readings_in)  # fmt: skip
