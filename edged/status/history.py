"""The last hour, in memory, for the status page's charts.

``PointHistory`` keeps, for each numeric point, one value per 30 s (the mean
of the readings in that step) for the last hour: 120 single-precision
floats in a fixed array per point, at most ``max_points`` points
(``status.http.history_points``, 2,000 by default: about 0.9 KB a point,
17.4 MB for 20,000 points, measured with tracemalloc; a point past the cap
gets no history, and that is logged once). Nothing is written to disk: a restart starts empty.

``Trend`` keeps the uplinks' figures (connected or not, messages waiting,
the outbox's depth and oldest age) sampled every 10 s for the last hour.

``RecentCommands`` keeps the last command results, whoever issued them.
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from edged.model import CommandResult, DeviceRemoved, Quality, Reading

if TYPE_CHECKING:
    from edged.model import Event
    from edged.view import GatewayView

log = logging.getLogger(__name__)

WINDOW = 3600.0  # seconds of history kept
STEP = 30.0  # seconds per point's sample
MAX_POINTS = 2_000  # points with a history unless status.http.history_points says otherwise; the rest get none
TREND_STEP = 10.0  # seconds between samples of the uplinks' figures
RECENT_COMMANDS = 20

_EMPTY = math.nan


class _Ring:
    """One point's samples: slot ``bucket % size`` holds step ``bucket`` (NaN when there was no reading);
    the newest step is its running sum and count until the next step begins."""

    __slots__ = ("count", "last", "sum", "values")

    def __init__(self, size: int) -> None:
        self.values = array("f", [_EMPTY]) * size
        self.last = -1  # the newest step with a reading
        self.sum = 0.0  # of the newest step's readings so far
        self.count = 0

    def add(self, bucket: int, value: float) -> None:
        size = len(self.values)
        if bucket > self.last:
            if self.count:
                self.values[self.last % size] = self.sum / self.count
            for skipped in range(max(self.last + 1, bucket - size + 1), bucket):
                self.values[skipped % size] = _EMPTY
            self.last, self.sum, self.count = bucket, value, 1
        elif bucket == self.last:
            self.sum += value
            self.count += 1
        elif bucket > self.last - size:  # a late reading of an earlier step: it stands for that step
            self.values[bucket % size] = value

    def value(self, bucket: int) -> float | None:
        """The value of step ``bucket``; None when there was no reading or it is older than the ring."""
        if bucket == self.last:
            return self.sum / self.count
        if not self.last - len(self.values) < bucket < self.last:
            return None
        value = self.values[bucket % len(self.values)]
        return None if math.isnan(value) else float(value)


class PointHistory:
    """The last hour of every numeric point (see the module's docstring for the budget)."""

    def __init__(self, window: float = WINDOW, step: float = STEP, max_points: int = MAX_POINTS) -> None:
        self.step = step
        self.size = max(1, math.ceil(window / step))
        self.max_points = max_points
        self.rings: dict[tuple[str, str], _Ring] = {}
        self.untracked = 0  # readings of points past the cap
        self._charted: set[str] = set()  # devices with a charted point
        self._warned = False

    def record(self, readings: Sequence[Reading]) -> None:
        """Take one batch of the Hub's readings (a Hub reading listener; on the readings' hot path).
        Once the cap is reached, a device with no charted point costs one set lookup a reading."""
        rings, step, bad, charted = self.rings, self.step, Quality.BAD, self._charted
        full = len(rings) >= self.max_points
        for reading in readings:
            device_id, key, value, ts, quality = reading
            kind = type(value)
            if (kind is not float and kind is not int) or quality is bad:
                continue  # bools, text and bad values have no trend
            if full and device_id not in charted:
                self.untracked += 1
                continue
            ring = rings.get((device_id, key))
            if ring is None:
                if full or (ring := self._new_ring(reading)) is None:
                    self.untracked += 1
                    continue
                full = len(rings) >= self.max_points
            bucket = int(ts // step)
            if bucket == ring.last:  # another reading in the newest step
                ring.sum += value
                ring.count += 1
            else:
                ring.add(bucket, float(value))  # type: ignore[arg-type]

    def _new_ring(self, reading: Reading) -> _Ring | None:
        if len(self.rings) >= self.max_points:
            if not self._warned:
                self._warned = True
                log.warning("history: %d points have a history, the most kept; %s.%s and later points get none",
                            self.max_points, reading.device_id, reading.key)  # fmt: skip
            return None
        ring = self.rings[(reading.device_id, reading.key)] = _Ring(self.size)
        self._charted.add(reading.device_id)
        return ring

    def on_event(self, event: Event) -> None:
        """A Hub event listener: a device that leaves takes its history with it."""
        if isinstance(event, DeviceRemoved):
            self.forget(event.device_id)

    def forget(self, device_id: str) -> None:
        for key in [key for key in self.rings if key[0] == device_id]:
            del self.rings[key]
        self._charted.discard(device_id)

    def series(self, device_id: str, key: str, now: float | None = None) -> dict[str, Any] | None:
        """``{"start", "step", "values"}`` for the last hour up to ``now``; None when the point has no history."""
        ring = self.rings.get((device_id, key))
        if ring is None:
            return None
        newest = int((time.time() if now is None else now) // self.step)
        first = newest - self.size + 1
        values = [ring.value(bucket) for bucket in range(first, newest + 1)]
        while values and values[0] is None:  # start at the first value this hour
            values.pop(0)
            first += 1
        return {"start": first * self.step, "step": self.step, "values": values}

    def device(self, device_id: str, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Every point of ``device_id`` that has a history, by key."""
        keys = [key for (device, key) in list(self.rings) if device == device_id]
        return {key: series for key in keys if (series := self.series(device_id, key, now)) is not None}


class Trend:
    """A few gateway-wide figures sampled at a fixed interval for the last hour."""

    def __init__(self, window: float = WINDOW, step: float = TREND_STEP) -> None:
        self.step = step
        self.size = max(1, math.ceil(window / step))
        self.times: deque[float] = deque(maxlen=self.size)
        self.series: dict[str, deque[float | None]] = {}

    def sample(self, figures: dict[str, float | None], now: float | None = None) -> None:
        """Add one sample of each figure; a figure seen for the first time starts with gaps."""
        self.times.append(time.time() if now is None else now)
        for name, value in figures.items():
            if name not in self.series:
                self.series[name] = deque([None] * (len(self.times) - 1), maxlen=self.size)
            self.series[name].append(value)
        for name, values in self.series.items():
            if name not in figures:
                values.append(None)

    def json(self) -> dict[str, Any]:
        return {"step": self.step, "times": list(self.times), "series": {name: list(v) for name, v in self.series.items()}}


def uplink_figures(view: GatewayView) -> dict[str, float | None]:
    """What the uplink panel charts: each uplink's connection (1 or 0) and messages waiting,
    the outbox's depth and the age of its oldest message (seconds)."""
    if view.uplink is None:
        return {}
    figures: dict[str, float | None] = {}
    for name, service in view.uplink.services.items():
        stats = service.stats()
        figures[f"{name}.connected"] = float(stats.connected)
        figures[f"{name}.waiting"] = float(stats.waiting)
    outbox = view.uplink.outbox.stats()
    figures["outbox.depth"] = float(outbox.depth)
    figures["outbox.oldest_age"] = outbox.oldest_age
    return figures


class RecentCommands:
    """The last command results (from the API, the rules, the cloud), newest first."""

    def __init__(self, size: int = RECENT_COMMANDS, isotime: Callable[[float], str | None] | None = None) -> None:
        self.results: deque[CommandResult] = deque(maxlen=size)
        self._isotime = isotime

    def on_event(self, event: Event) -> None:
        """A Hub event listener: keeps the command results."""
        if isinstance(event, CommandResult):
            self.results.append(event)

    def json(self) -> list[dict[str, Any]]:
        out = []
        for result in reversed(self.results):
            command = result.command
            value = command.value if isinstance(command.value, (bool, int, float, str, type(None))) else str(command.value)
            out.append({
                "device": command.device_id, "key": command.key, "value": value,
                "origin": getattr(command.origin, "value", str(command.origin)), "status": result.status.value,
                "reason": result.reason, "ts": result.ts,
                "time": None if self._isotime is None else self._isotime(result.ts),
            })  # fmt: skip
        return out
