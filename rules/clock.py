"""Time as the rules engine sees it.

``Clock`` gives the current time (UTC epoch seconds) and sleeps until a
given time. ``RealClock`` is the wall clock; ``ManualClock`` stands still
until a test calls ``await clock.advance(seconds)``, which fires the due
timers one by one in time order and lets the woken tasks run before moving
on, so delays, ``for:`` durations and schedules are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Current time, UTC epoch seconds."""

    async def sleep_until(self, when: float) -> None:
        """Return at (or soon after) ``when``; at once if it is past."""


class RealClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        # Re-check after waking: the wall clock may have been stepped (NTP) meanwhile.
        while (left := when - time.time()) > 0:  # noqa: ASYNC110 - a deadline, not a flag another task sets
            await asyncio.sleep(left)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_750_000_000.0, settle_rounds: int = 50) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._settle_rounds = settle_rounds

    def now(self) -> float:
        return self._now

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (when, next(self._order), future))
        await future

    @property
    def pending(self) -> int:
        """Timers still waiting (cancelled ones are not counted)."""
        return sum(1 for _, _, f in self._timers if not f.done())

    async def settle(self) -> None:
        """Let every task that can run, run (a bounded number of loop rounds)."""
        for _ in range(self._settle_rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing due timers in order."""
        end = self._now + seconds
        await self.settle()
        while self._timers and self._timers[0][0] <= end:
            when, _, future = heapq.heappop(self._timers)
            if future.done():
                continue
            self._now = max(self._now, when)
            future.set_result(None)
            await self.settle()
        self._now = end
        await self.settle()
