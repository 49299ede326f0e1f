"""How many device events a device may send per second, so a flooding server cannot flood the gateway.

Each events device has a token bucket: ``rate`` events a second on average,
up to ``rate`` at once (one second's worth, at least one) after a quiet spell. An event
beyond that is not passed on as a device event (its readings still change)
but counted, and the next event that is passed on says how many were held
back before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class EventBudget:
    """A token bucket of ``rate`` events a second, at most ``rate`` (and at least one) at once."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.clock = clock
        self._tokens = self.burst
        self._last = clock()
        self.dropped = 0  # held back since the last event passed on
        self.dropped_total = 0

    def take(self) -> bool:
        """Whether one more event may go now; if not, it is counted as dropped."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.dropped += 1
        self.dropped_total += 1
        return False

    def held_back(self) -> int:
        """How many events were dropped since the last one passed on (and start counting again)."""
        dropped, self.dropped = self.dropped, 0
        return dropped
