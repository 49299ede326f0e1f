"""Drains the outbox over one connection, in two lanes.

The *live* lane takes the rows of every commit as they land; the *backlog*
lane reads older rows back from SQLite (everything stored when the
connection came up, and live rows that piled up faster than they could be
sent) at ``backfill_rate`` readings/s. Live rows always go first, so fresh
readings leave promptly while an outage's backlog drains. Within each lane
rows go out in id order; up to ``inflight`` messages are unacknowledged at
once, and each row is acked to the outbox (deleted) once the link returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from edged.outbox import READINGS, Outbox, Row
from edged.tasks import TaskSet

log = logging.getLogger(__name__)

Send = Callable[[Row], Awaitable[None]]

FETCH_READINGS = 20_000  # readings read back per backlog query
LIVE_LIMIT = 200_000  # live readings kept in memory; beyond, they go to the backlog lane


class Sender:
    def __init__(self, outbox: Outbox, send: Send, inflight: int, backfill_rate: int,
                 delivered: Counter[str] | None = None) -> None:
        self.outbox = outbox
        self._send = send
        self._window = asyncio.Semaphore(inflight)
        self.backfill_rate = backfill_rate
        self._live: deque[Row] = deque()
        self._live_readings = 0
        self._segments: deque[tuple[int, int]] = deque()  # backlog id ranges (after, upto]
        self._buffer: deque[Row] = deque()
        self._wake = asyncio.Event()
        self._failure: BaseException | None = None
        self._tasks = TaskSet()
        # Figures for metrics.
        self.sent_live = 0  # readings acknowledged, by lane
        self.sent_backlog = 0
        self.delivered = Counter() if delivered is None else delivered  # readings acknowledged, by adapter

    async def run(self) -> None:
        """Send until the link fails (raised); cancel to stop."""
        boundary = self.outbox.last_id
        if self.outbox.rows:
            self._segments.append((0, boundary))
        unsubscribe = self.outbox.subscribe(self._on_commit)
        try:
            await self._loop()
        finally:
            unsubscribe()
            await self._tasks.close()

    def _on_commit(self, rows: list[Row]) -> None:
        self._live.extend(rows)
        self._live_readings += sum(r.count for r in rows)
        if self._live_readings > LIVE_LIMIT:
            # The link is slower than the producers: leave these rows on disk for the backlog lane.
            self._segments.append((self._live[0].id - 1, self._live[-1].id))
            self._live.clear()
            self._live_readings = 0
        self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        tokens = 0.0
        refilled = loop.time()
        while True:
            if self._failure is not None:
                raise self._failure
            if self._live:
                row = self._live.popleft()
                self._live_readings -= row.count
                live = True
            elif self._buffer:
                row = self._buffer[0]
                if self.backfill_rate:
                    now = loop.time()
                    tokens = min(tokens + (now - refilled) * self.backfill_rate, max(self.backfill_rate, row.count))
                    refilled = now
                    if tokens < row.count:
                        await self._idle((row.count - tokens) / self.backfill_rate)
                        continue
                    tokens -= row.count
                self._buffer.popleft()
                live = False
            elif self._segments:
                after, upto = self._segments[0]
                rows = await self.outbox.fetch(after, upto, FETCH_READINGS)
                if rows and rows[-1].id < upto:
                    self._segments[0] = (rows[-1].id, upto)
                else:
                    self._segments.popleft()
                self._buffer.extend(rows)
                continue
            else:
                await self._idle(None)
                continue
            await self._window.acquire()
            self._tasks.spawn(self._deliver(row, live), name=f"send {row.id}")

    async def _idle(self, timeout: float | None) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _deliver(self, row: Row, live: bool) -> None:
        try:
            await self._send(row)
        except Exception as exc:  # noqa: BLE001 - any failure ends this connection; run() raises it
            if self._failure is None:
                self._failure = exc
            self._wake.set()
            return
        finally:
            self._window.release()
        self.outbox.ack((row.id,))
        if row.kind == READINGS:
            self.delivered[row.subject.partition("/")[0]] += row.count
        if live:
            self.sent_live += row.count
        else:
            self.sent_backlog += row.count
