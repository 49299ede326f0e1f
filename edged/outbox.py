"""The durable store-and-forward queue between the Hub and the uplink.

Readings handed to ``put`` are queued in memory and committed to SQLite (WAL)
by a worker thread, many batches per transaction; a reading is *accepted*
once its transaction has committed. Rows leave the outbox only when the
uplink calls ``ack`` with their ids after the cloud acknowledged them, or
when a bound forces them out (``max_bytes`` by the policy, ``ttl`` by age),
which is counted reading by reading.

Row format: one row holds up to ``row_readings`` readings of ONE device from
one commit, packed as a JSON array of ``[key, value, ts, quality]`` arrays,
so the MQTT uplink sends a row as one message without decoding it. Row ids
grow for ever (``AUTOINCREMENT``): a row's id is its message id, and a
device's rows are in the order its readings arrived. Events (command
results, device status, rule events) are rows holding one JSON object.

A commit that fails (disk full, I/O error) loses nothing: what it carried
goes back to the front of the queue and is committed again with backoff,
while ``commit_error`` says why for the health view; memory stays bounded by
``MAX_PENDING`` as for a slow disk. Only at shutdown, after one last try,
is what could not be stored counted as rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import ByteSize, Field, field_validator

from edged.backoff import Backoff
from edged.fields import Duration, Model
from edged.model import Reading
from edged.tasks import TaskSet

log = logging.getLogger(__name__)
T = TypeVar("T")

READINGS = 0
EVENT = 1
_COUNTERS = ("accepted", "dropped_full", "rejected", "expired", "acked")
MAX_PENDING = 2_000_000  # readings waiting in memory for a commit before new ones are refused
ROW_OVERHEAD = 32  # bytes counted per row on top of its payload and subject


class OutboxConfig(Model):
    """``outbox:`` section: where and how much the gateway keeps while offline."""

    path: Path = Path("outbox.sqlite")  # relative to the gateway's state_dir
    max_bytes: ByteSize = Field(ByteSize(256 * 2**20), gt=0)  # 256MiB; takes 500MB, 1GiB, ...
    ttl: Duration = 7 * 86400.0  # readings older than this are dropped (counted as expired)
    policy: Literal["drop_oldest", "reject_newest"] = "drop_oldest"
    # off: survives a process crash, not a power loss; normal: survives a process
    # crash, a power loss may lose the last transactions; full: survives both.
    synchronous: Literal["off", "normal", "full"] = "normal"
    row_readings: int = Field(1000, ge=1, le=100_000)  # readings packed per row (and per message)

    @field_validator("synchronous", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Row(NamedTuple):
    """One stored message: ``id`` is its message id, ``count`` its readings."""

    id: int
    kind: int
    subject: str  # device id for readings, event type for events
    count: int
    payload: bytes


class Outbox:
    """Durable queue; ``put`` and ``put_event`` never block the loop."""

    def __init__(self, config: OutboxConfig, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.path = config.path if config.path.is_absolute() else state_dir / config.path
        self.clock = clock
        self._executor: ThreadPoolExecutor | None = None  # the one thread that touches the database
        self._db: sqlite3.Connection | None = None
        self._pending: list[Sequence[Reading]] = []
        self._pending_count = 0
        self._stalled = False
        self._pending_events: list[tuple[str, bytes]] = []
        self._acked: list[int] = []
        self._tasks = TaskSet()
        self._writer: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[list[Row]], None]] = []
        self._retry = Backoff(initial=0.5, maximum=30.0)
        self._closing = asyncio.Event()
        self.commit_error: str | None = None  # why commits fail, while they do
        self.last_id = 0  # id of the newest committed row
        # Figures for metrics (readings; an event counts as one).
        self.accepted = 0
        self.dropped_full = 0  # removed to make room (drop_oldest)
        self.rejected = 0  # refused because full (reject_newest)
        self.expired = 0  # removed by ttl
        self.acked = 0
        self.depth = 0
        self.bytes = 0
        self.rows = 0
        self.oldest: float | None = None  # when the oldest row was accepted

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        self._closing.clear()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        await self._in_thread(self._open)

    async def close(self) -> None:
        """Commit everything handed over, then close the database."""
        self._closing.set()
        try:
            await self.flush()
        finally:
            await self._tasks.close()
            if self._executor is not None:
                await self._in_thread(self._close)
                self._executor.shutdown(wait=True)
                self._executor = None

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None, "outbox is not open"
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
        db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,"
            " subject TEXT NOT NULL, created REAL NOT NULL, count INTEGER NOT NULL, size INTEGER NOT NULL,"
            " payload BLOB NOT NULL)"
        )
        self._recount(db)
        (self.last_id,) = db.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name='outbox'").fetchone()
        self._db = db
        self._update_oldest()
        log.info("outbox %s: %d readings waiting (%d bytes)", self.path, self.depth, self.bytes)

    def _recount(self, db: sqlite3.Connection) -> None:
        """Set the figures from what is committed."""
        for name, value in db.execute("SELECT name, value FROM counters"):
            if name in _COUNTERS:
                setattr(self, name, value)
        depth, size, rows = db.execute("SELECT total(count), total(size), count(*) FROM outbox").fetchone()
        self.depth, self.bytes, self.rows = int(depth), int(size), rows

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- input (from the loop) -------------------------------------------

    def put(self, readings: Sequence[Reading]) -> None:
        """Queue one batch for the next commit (a Hub reading listener).

        If the disk stalls so long that ``MAX_PENDING`` readings wait in
        memory, further batches are refused (counted as rejected) rather than
        growing memory until the process is killed and loses them all."""
        if not readings:
            return
        if self._pending_count >= MAX_PENDING:
            if not self._stalled:
                log.error("outbox: %d readings wait for the disk; refusing more until it catches up", MAX_PENDING)
                self._stalled = True
            self.rejected += len(readings)
            return
        self._pending.append(readings)
        self._pending_count += len(readings)
        self._wake()

    def put_event(self, subject: str, data: dict[str, Any]) -> None:
        """Queue one event (a JSON object) for the next commit."""
        self._pending_events.append((subject, json.dumps(data, separators=(",", ":"), default=str).encode()))
        self._wake()

    def ack(self, ids: Iterable[int]) -> None:
        """The cloud acknowledged these rows: delete them in the next commit."""
        self._acked.extend(ids)
        self._wake()

    def subscribe(self, listener: Callable[[list[Row]], None]) -> Callable[[], None]:
        """Call ``listener`` on the loop after every commit with its new rows (maybe none),
        and with none after a commit that failed."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def flush(self) -> None:
        """Return once everything handed over so far is committed."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    def _wake(self) -> None:
        if self._writer is None:
            self._writer = self._tasks.spawn(self._drain(), name="outbox writer")

    async def _drain(self) -> None:
        try:
            while self._pending or self._pending_events or self._acked:
                batches, self._pending = self._pending, []
                self._pending_count, self._stalled = 0, False
                events, self._pending_events = self._pending_events, []
                acked, self._acked = self._acked, []
                try:
                    rows = await self._in_thread(self._commit, batches, events, acked)
                except sqlite3.Error as exc:
                    await self._failed(exc, batches, events, acked)
                    continue
                if self.commit_error is not None:
                    log.warning("outbox: commits work again")
                    self.commit_error = None
                    self._retry.reset()
                if rows:
                    self.last_id = rows[-1].id  # set on the loop, together with telling the listeners
                for listener in list(self._listeners):
                    listener(rows)
        finally:
            self._writer = None

    async def _failed(self, exc: sqlite3.Error, batches: list[Sequence[Reading]], events: list[tuple[str, bytes]],
                      acked: list[int]) -> None:  # fmt: skip
        """Put what a failed commit carried back in front of the queue and wait before the next try."""
        readings = sum(len(b) for b in batches)
        if self._closing.is_set():
            log.error("outbox: cannot commit at shutdown (%s); %d readings and %d events are lost", exc, readings, len(events))
            self.rejected += readings + len(events)
            return
        if self.commit_error is None:
            log.error("outbox: cannot commit (%s); keeping %d readings in memory and trying again", exc, readings)
        self.commit_error = str(exc)
        self._pending[:0] = batches
        self._pending_count += readings
        self._pending_events[:0] = events
        self._acked[:0] = acked
        for listener in list(self._listeners):
            listener([])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self._retry.next_delay())

    # -- worker thread ---------------------------------------------------

    def _commit(self, batches: list[Sequence[Reading]], events: list[tuple[str, bytes]], acked: list[int]) -> list[Row]:
        db = self._db
        assert db is not None, "outbox is not open"
        now = self.clock()
        records = self._pack(batches, events)
        db.execute("BEGIN IMMEDIATE")
        try:
            if acked:
                self._delete_acked(db, acked)
            self._expire(db, now)
            records = self._make_room(db, records)
            rows = []
            insert = "INSERT INTO outbox (kind, subject, created, count, size, payload) VALUES (?, ?, ?, ?, ?, ?)"
            for kind, subject, count, size, payload in records:
                cursor = db.execute(insert, (kind, subject, now, count, size, payload))
                rows.append(Row(cursor.lastrowid or 0, kind, subject, count, payload))
            for row in rows:
                self.depth += row.count
                self.accepted += row.count
            # The counters commit with the rows they count, so they stay exact across crashes.
            db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                [(name, getattr(self, name)) for name in _COUNTERS],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite itself rolls back on some errors (a full disk)
                db.execute("ROLLBACK")
            self._recount(db)  # undo what this transaction had counted
            raise
        self.bytes += sum(r[3] for r in records)
        self.rows += len(rows)
        self._update_oldest()
        return rows

    def _pack(self, batches: list[Sequence[Reading]], events: list[tuple[str, bytes]]) -> list[tuple[Any, ...]]:
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for batch in batches:
            for reading in batch:
                group = groups.get(reading[0])
                if group is None:
                    groups[reading[0]] = group = []
                group.append(reading[1:])
        per_row = self.config.row_readings
        records: list[tuple[Any, ...]] = []
        for device, group in groups.items():
            for start in range(0, len(group), per_row):
                chunk = group[start : start + per_row]
                payload = _encode(chunk)
                records.append((READINGS, device, len(chunk), len(payload) + len(device) + ROW_OVERHEAD, payload))
        for subject, payload in events:
            records.append((EVENT, subject, 1, len(payload) + len(subject) + ROW_OVERHEAD, payload))
        return records

    def _delete_acked(self, db: sqlite3.Connection, acked: list[int]) -> None:
        for low, high in _ranges(acked):
            for count, size in db.execute(
                "DELETE FROM outbox WHERE id BETWEEN ? AND ? RETURNING count, size", (low, high)
            ).fetchall():
                self.depth -= count
                self.bytes -= size
                self.rows -= 1
                self.acked += count

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        if self.oldest is None or self.oldest >= now - self.config.ttl:
            return
        gone = db.execute("DELETE FROM outbox WHERE created < ? RETURNING count, size", (now - self.config.ttl,)).fetchall()
        for count, size in gone:
            self.depth -= count
            self.bytes -= size
            self.rows -= 1
            self.expired += count
        if gone:
            log.warning("outbox: %d readings older than %g s expired", sum(c for c, _ in gone), self.config.ttl)

    def _make_room(self, db: sqlite3.Connection, records: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Apply the policy so that the outbox stays within ``max_bytes``."""
        limit = self.config.max_bytes
        incoming = sum(r[3] for r in records)
        if self.bytes + incoming <= limit:
            return records
        if self.config.policy == "reject_newest":
            kept, total = [], self.bytes
            for index, record in enumerate(records):
                if total + record[3] > limit:
                    self.rejected += sum(r[2] for r in records[index:])  # no gaps: all later ones too
                    break
                kept.append(record)
                total += record[3]
            log.warning("outbox full: %d readings rejected", sum(r[2] for r in records) - sum(r[2] for r in kept))
            return kept
        # drop_oldest: stored rows go first, then the oldest of the incoming ones.
        need = self.bytes + incoming - limit
        dropped = 0
        while need > 0 and self.rows:
            chunk = db.execute("SELECT id, count, size FROM outbox ORDER BY id LIMIT 256").fetchall()
            if not chunk:
                break
            upto = chunk[0][0]
            for row_id, count, size in chunk:
                upto = row_id
                need -= size
                self.bytes -= size
                self.depth -= count
                self.rows -= 1
                dropped += count
                if need <= 0:
                    break
            db.execute("DELETE FROM outbox WHERE id <= ?", (upto,))
        while need > 0 and records:
            record = records.pop(0)
            need -= record[3]
            dropped += record[2]
            self.accepted += record[2]  # taken in, and pushed out at once by newer readings
        self.dropped_full += dropped
        log.warning("outbox full: dropped the %d oldest readings", dropped)
        return records

    def _update_oldest(self) -> None:
        assert self._db is not None
        row = self._db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        self.oldest = row[0] if row else None

    # -- reading back (backlog) ------------------------------------------

    async def fetch(self, after: int, upto: int, limit: int) -> list[Row]:
        """Rows with ``after < id <= upto`` in id order, at most ``limit`` readings' worth (at least one row)."""
        return await self._in_thread(self._fetch, after, upto, limit)

    def _fetch(self, after: int, upto: int, limit: int) -> list[Row]:
        assert self._db is not None, "outbox is not open"
        rows: list[Row] = []
        total = 0
        cursor = self._db.execute(
            "SELECT id, kind, subject, count, payload FROM outbox WHERE id > ? AND id <= ? ORDER BY id", (after, upto)
        )
        for row in cursor:
            rows.append(Row(*row))
            total += row[3]
            if total >= limit:
                break
        cursor.close()
        return rows

    # -- metrics ---------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.rejected + self.expired

    def stats(self) -> dict[str, float | int | None]:
        return {
            "outbox_depth": self.depth,
            "outbox_bytes": self.bytes,
            "outbox_rows": self.rows,
            "outbox_oldest_age": None if self.oldest is None else max(0.0, self.clock() - self.oldest),
            "outbox_accepted": self.accepted,
            "outbox_dropped": self.dropped,
            "outbox_dropped_full": self.dropped_full,
            "outbox_rejected": self.rejected,
            "outbox_expired": self.expired,
            "outbox_acked": self.acked,
            "outbox_commit_failing": int(self.commit_error is not None),
        }


_dumps = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode


def _encode(chunk: list[tuple[Any, ...]]) -> bytes:
    """JSON for ``[key, value, ts, quality]`` tuples; NaN and infinities (not JSON) become null."""
    try:
        return _dumps(chunk).encode()
    except ValueError:
        return _dumps([(k, None if isinstance(v, float) and not math.isfinite(v) else v, t, q) for k, v, t, q in chunk]).encode()


def _ranges(ids: list[int]) -> list[tuple[int, int]]:
    """Collapse ids into inclusive ``(low, high)`` runs of consecutive ids."""
    ids = sorted(set(ids))
    ranges: list[tuple[int, int]] = []
    low = high = ids[0]
    for value in ids[1:]:
        if value != high + 1:
            ranges.append((low, high))
            low = value
        high = value
    ranges.append((low, high))
    return ranges
