"""Drains one uplink's share of the outbox (its ``Lane``) over one connection, in two lanes.

The *live* lane takes the rows of every commit as they land; the *backlog*
lane reads older rows back from SQLite (everything stored when the
connection came up, and live rows that piled up faster than they could be
sent) at ``backfill_rate`` readings/s. Live rows always go first, so fresh
readings leave promptly while an outage's backlog drains. Within each lane
rows go out in id order; up to ``inflight`` messages are unacknowledged at
once, and each row is acked to the outbox (deleted) once the link returns.

A refusal is not a delivery. A row the cloud refuses for a passing reason
(not authorized, quota exceeded) stays in the outbox and ends the
connection, so it is sent again after the reconnect backoff. A row refused
for good (too large, malformed) is tried ``max_attempts`` times and then
moved to the dead letters, and the rows behind it flow on. A row that was
in flight when a connection was lost is sent alone on the next one; if the
connection is lost again while it is alone in flight (a broker that
disconnects on an oversized message) that counts as an attempt too.

Acknowledged and dead-lettered rows leave only this uplink's share: another
uplink of the same outbox still gets them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from edged.backoff import Backoff
from edged.errors import Refused
from edged.outbox import READINGS, Row
from edged.tasks import TaskSet

log = logging.getLogger(__name__)

Send = Callable[[Row], Awaitable[None]]

FETCH_READINGS = 20_000  # readings read back per backlog query
LIVE_LIMIT = 200_000  # live readings kept in memory; beyond, they go to the backlog lane


class Queue(Protocol):
    """What a sender drains: an uplink's ``Lane`` of the outbox (or an ``Outbox`` of one uplink)."""

    @property
    def last_id(self) -> int: ...

    @property
    def rows(self) -> int: ...

    def subscribe(self, listener: Callable[[list[Row]], None]) -> Callable[[], None]: ...

    async def fetch(self, after: int, upto: int, limit: int) -> list[Row]: ...

    def ack(self, ids: Iterable[int]) -> None: ...

    async def dead_letter(self, row: Row, reason: str) -> bool: ...


class Refusals:
    """What the cloud refused, kept across connections."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.by_reason: Counter[str] = Counter()  # messages refused, by reason
        self.attempts: dict[int, int] = {}  # row id -> failed tries that count towards the dead letters
        self.suspects: set[int] = set()  # rows in flight when a connection was lost: sent alone next time
        self._logged: set[tuple[str, str]] = set()

    def refused(self, row: Row, exc: Refused) -> bool:
        """Count a refusal; True when the row has had its tries and goes to the dead letters."""
        self.by_reason[exc.reason] += 1
        if (exc.where, exc.reason) not in self._logged:
            self._logged.add((exc.where, exc.reason))
            log.error("the cloud refused a message on %s: %s; it stays in the outbox%s", exc.where, exc.reason,
                      "" if exc.permanent else " and is sent again")  # fmt: skip
        if not exc.permanent:
            return False
        tries = self.attempts[row.id] = self.attempts.get(row.id, 0) + 1
        return exc.final or tries >= self.max_attempts

    def lost(self, inflight: dict[int, Row], alone: int | None) -> None:
        """The connection was lost with these rows in flight."""
        if alone is not None:
            self.attempts[alone] = self.attempts.get(alone, 0) + 1
        self.suspects.update(inflight)
        if len(self.suspects) > 100_000:  # rows taken by the outbox bounds meanwhile leave stale ids
            self.suspects.clear()

    def exhausted(self, row: Row) -> bool:
        return self.attempts.get(row.id, 0) >= self.max_attempts

    def delivered(self, row: Row) -> None:
        self.attempts.pop(row.id, None)
        self.suspects.discard(row.id)
        if self._logged:
            self._logged = set()  # a refusal that comes back is worth a line again


class Sender:
    def __init__(self, outbox: Queue, send: Send, inflight: int, backfill_rate: int,
                 delivered: Counter[str] | None = None, refusals: Refusals | None = None,
                 backoff: Backoff | None = None) -> None:  # fmt: skip
        self.outbox = outbox
        self._send = send
        self._size = inflight
        self._window = asyncio.Semaphore(inflight)
        self.refusals = refusals or Refusals(3)
        self.backoff = backoff  # reset once the cloud takes a message
        self.inflight: dict[int, Row] = {}
        self.alone: int | None = None  # the row in flight by itself, if one is
        self.ended_with: tuple[dict[int, Row], int | None] = ({}, None)
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
            self.ended_with = (dict(self.inflight), self.alone)  # what was in flight when it stopped
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
            if row.id in self.refusals.attempts and self.refusals.exhausted(row):
                await self._dead_letter(row, "the connection was lost each time this message was sent")
                continue
            permits = self._size if row.id in self.refusals.suspects else 1
            for _ in range(permits):  # a suspect goes alone: nothing else in flight
                await self._window.acquire()
            self.inflight[row.id] = row
            if permits > 1:
                self.alone = row.id
            self._tasks.spawn(self._deliver(row, live, permits), name=f"send {row.id}")

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._wake.set()

    async def _dead_letter(self, row: Row, reason: str) -> None:
        self.refusals.attempts.pop(row.id, None)
        self.refusals.suspects.discard(row.id)
        try:
            await self.outbox.dead_letter(row, reason)
        except Exception as exc:  # noqa: BLE001 - the row stays queued; the connection starts over
            self._fail(exc)

    async def _idle(self, timeout: float | None) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _deliver(self, row: Row, live: bool, permits: int) -> None:
        try:
            try:
                await self._send(row)
            except Refused as exc:
                if self.refusals.refused(row, exc):
                    await self._dead_letter(row, exc.reason)
                    return
                self._fail(exc)
                return
            except Exception as exc:  # noqa: BLE001 - any failure ends this connection; run() raises it
                self._fail(exc)
                return
        finally:
            self.inflight.pop(row.id, None)
            if self.alone == row.id:
                self.alone = None
            for _ in range(permits):
                self._window.release()
        self.refusals.delivered(row)
        if self.backoff is not None:
            self.backoff.reset()
        self.outbox.ack((row.id,))
        if row.kind == READINGS:
            self.delivered[row.subject.partition("/")[0]] += row.count
        if live:
            self.sent_live += row.count
        else:
            self.sent_backlog += row.count
