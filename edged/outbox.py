"""The durable store-and-forward queue between the Hub and the uplink.

Readings handed to ``put`` are queued in memory and committed to SQLite (WAL)
by a worker thread, many batches per transaction (whatever arrives within
``COMMIT_INTERVAL`` of the previous commit; acknowledgements alone wait up
to ``ACK_DELAY`` for readings to share theirs); a reading is *accepted*
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
is what could not be stored counted as rejected. ``put`` takes readings
before the database is open; they wait in memory like those of a slow disk.

Message keys: every row carries the *generation* of the outbox that
stored it. A new generation starts at every ``open`` and is fsynced (in a
file beside the database, and in the database) before any row of it exists,
so ``(generation, id)`` is never given to two different messages, even when
a power cut loses the last transactions (and the ids with them) or the
database is deleted or replaced.

Age: ``ttl`` and ``outbox_oldest_age`` are measured in the outbox's own
*age clock*, the seconds it has been open in total (``time.monotonic`` while
open, continued across restarts from a value stored with the counters), not
the wall clock: a board without a real-time clock steps its wall clock by
days when it syncs time after boot, and that step must not expire readings
accepted a moment before. So age counts the time the gateway runs; time with
the power off (or the daemon stopped) does not count. Rows of a file from an
older release, which have no age yet, start ageing when it is first opened.

Clock: rows stored while ``clock_synced`` is False (the daemon's clock watch
sets it) are marked ``unsynced``: their readings were stamped before the
system clock was synchronised, and the uplink says so in their messages.

Uplinks: one outbox feeds every configured uplink, each through its *lane*
(``lane(name)``). A reading is committed once, in one row; the row's
``waiting`` bitmask says which uplinks still have to deliver it, and it is
deleted in the transaction where the last of them acknowledges it (or a bound
forces it out). Each uplink keeps its bit across restarts (table
``uplinks``): the first uplink of a file gets bit 0, which rows of an older
release carry; an uplink added later gets a free bit and the rows committed
from then on; an uplink no longer configured has its bit cleared from every
row at ``open``, and rows only it still needed are deleted (counted as
``abandoned``, and logged). A file none of whose uplinks is configured any
more is taken over by the first configured one, as a file of an older
release is.

Rows the cloud refuses for good are moved, for the uplink that was refused,
to a dead-letter table (``dead_letter``), from where an operator lists,
requeues (to that uplink only) or discards them.

Accounting: every reading handed to ``put`` is, at any moment, in exactly one
of ``pending`` (waiting for its commit), ``rejected`` or ``accepted``. For
each uplink, every reading accepted while it was configured is in exactly one
of its ``acked``, ``depth`` (stored with its bit), ``dropped_full``,
``expired``, ``dead_letters`` (held in the dead-letter table for it) or
``discarded``. The lanes keep these counters and commit them with the rows
they count; the outbox's own figures of that kind are their sums, which for
one uplink are its figures. ``balance()`` checks every equation.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from pydantic import ByteSize, Field, field_validator

from edged.backoff import Backoff
from edged.fields import Duration, FilePath, Model
from edged.files import write_atomic
from edged.model import Reading
from edged.part import State, counter, gauge
from edged.tasks import TaskSet

log = logging.getLogger(__name__)
T = TypeVar("T")

READINGS = 0
EVENT = 1
_COUNTERS = ("accepted", "rejected", "corrupt", "abandoned")  # the outbox's own
_LANE_COUNTERS = ("accepted", "acked", "dropped_full", "expired", "dead_lettered", "requeued", "discarded")  # each uplink's
DEFAULT_LANE = "uplink"  # the lane of an outbox opened without naming any
MAX_LANES = 63  # bits of the ``waiting`` mask
COMMIT_INTERVAL = 0.02  # seconds: a commit takes everything that arrived within this long after the previous one
ACK_DELAY = 1.0  # seconds acknowledgements alone wait for readings to share their commit
MAX_PENDING = 2_000_000  # readings waiting in memory for a commit before new ones are refused
ROW_OVERHEAD = 32  # bytes counted per row on top of its payload and subject
_INSERT_ROW = (
    "INSERT INTO outbox (kind, subject, created, age_clock, count, size, payload, gen, unsynced, waiting)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


HEALTH_FULL = 0.9  # the fill that counts as a problem
_DROPPED = "Readings the outbox lost, by reason"


@dataclass
class OutboxStats:
    depth: int = gauge("edged_outbox_depth_readings", "Readings stored and not yet acknowledged by the cloud")
    bytes: int = gauge("edged_outbox_bytes", "Size of the stored outbox rows")
    rows: int = gauge("edged_outbox_rows", "Rows in the outbox")
    oldest_age: float | None = gauge("edged_outbox_oldest_age_seconds", "Age of the oldest unacknowledged row")
    accepted: int = counter("edged_outbox_accepted", "Readings committed to the outbox")
    dropped: int = 0  # all three reasons below
    dropped_full: int = counter("edged_outbox_dropped", _DROPPED, reason="full")
    rejected: int = counter("edged_outbox_dropped", _DROPPED, reason="rejected")
    expired: int = counter("edged_outbox_dropped", _DROPPED, reason="expired")
    acked: int = counter("edged_outbox_acked", "Readings removed after the cloud acknowledged them")
    dead_letters: int = gauge("edged_outbox_dead_letters_readings", "Readings held in the dead letters")
    dead_lettered: int = counter("edged_outbox_dead_lettered", "Readings moved to the dead letters (refused for good)")
    requeued: int = counter("edged_outbox_requeued", "Readings an operator moved back from the dead letters")
    discarded: int = counter("edged_outbox_discarded", "Readings deleted from the dead letters")
    corrupt: int = counter("edged_outbox_corrupt", "Damaged outbox files moved aside")
    abandoned: int = counter("edged_outbox_abandoned", "Readings only an uplink no longer configured still needed, deleted")
    generation: int = gauge("edged_outbox_generation", "The generation in the key of new messages")
    commit_failing: int = gauge("edged_outbox_commit_failing", "1 while commits fail (disk full, I/O error)")
    open_failing: int = gauge("edged_outbox_open_failing", "1 while the outbox database cannot be opened")


class OutboxConfig(Model):
    """``outbox:`` section: where and how much the gateway keeps while offline."""

    path: FilePath = Path("outbox.sqlite")  # relative to the gateway's state_dir
    max_bytes: ByteSize = Field(ByteSize(256 * 2**20), gt=0)  # 256MiB; takes 500MB, 1GiB, ...
    # Readings older than this are dropped (counted as expired). Age counts only the
    # time the gateway runs: time with the power off does not count, and a step of
    # the wall clock (a time sync after boot) changes nothing.
    ttl: Duration = 7 * 86400.0
    policy: Literal["drop_oldest", "reject_newest"] = "drop_oldest"
    # off: survives a process crash, not a power loss; normal: survives a process
    # crash, a power loss may lose the last transactions; full: survives both.
    synchronous: Literal["off", "normal", "full"] = "normal"
    row_readings: int = Field(1000, ge=1, le=100_000)  # readings packed per row (and per message)
    dead_letter_rows: int = Field(1000, ge=0)  # refused rows kept for an operator; the oldest go beyond this

    @field_validator("synchronous", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


_DEAD_COLUMNS = "id, kind, subject, created, count, size, payload, gen, reason, failed, unsynced"
_CREATE_DEAD_LETTER = (
    "CREATE TABLE IF NOT EXISTS {table} (id INTEGER NOT NULL, kind INTEGER NOT NULL, subject TEXT NOT NULL,"
    " created REAL NOT NULL, count INTEGER NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL, gen INTEGER NOT NULL,"
    " reason TEXT NOT NULL, failed REAL NOT NULL, unsynced INTEGER NOT NULL DEFAULT 0, uplink TEXT NOT NULL,"
    " PRIMARY KEY (id, uplink))"
)


class Row(NamedTuple):
    """One stored message: ``id`` is its message id, ``count`` its readings."""

    id: int
    kind: int
    subject: str  # device id for readings, event type for events
    count: int
    payload: bytes
    gen: int = 0  # the outbox generation that stored it: (gen, id) is the message's key
    unsynced: bool = False  # stored before the system clock was synchronised: its timestamps may be wrong


class _Unsynced(tuple):  # type: ignore[type-arg]
    """A batch put while the system clock was not synchronised."""


class _Event(NamedTuple):
    subject: str
    payload: bytes
    unsynced: bool
    lane: Lane | None  # the one uplink it is for; None: every uplink


class DeadLetter(NamedTuple):
    """A row the cloud refused for good, as an operator sees it."""

    id: int
    gen: int
    kind: str
    subject: str
    count: int
    size: int
    created: float
    failed: float
    reason: str
    uplink: str = DEFAULT_LANE  # the uplink that was refused (only it gets a requeued row)


def _lane_counter(lane: str, position: int, counter: str) -> str:
    """The name a lane's counter has in the ``counters`` table: the uplink with bit 0 keeps the
    names of the outbox of one uplink (but ``accepted``, which stays the outbox's own)."""
    return counter if position == 0 and counter != "accepted" else f"uplink:{lane}:{counter}"


class Lane:
    """One uplink's share of the outbox: the rows it has yet to deliver, and its own accounting.

    The ``Sender`` of that uplink drains the lane as it would the outbox:
    ``last_id``, ``rows``, ``subscribe``, ``fetch``, ``ack``, ``dead_letter``."""

    def __init__(self, outbox: Outbox, name: str) -> None:
        self.outbox = outbox
        self.name = name
        self.bit = 0  # its bit in ``waiting``: set when the outbox opens
        self._listeners: list[Callable[[list[Row]], None]] = []
        # Figures (readings; an event counts as one), committed with the rows they count.
        self.accepted = 0  # committed while this uplink was configured
        self.acked = 0
        self.dropped_full = 0
        self.expired = 0
        self.dead_lettered = 0
        self.requeued = 0
        self.discarded = 0
        self.depth = 0  # readings in rows with this lane's bit
        self.rows = 0
        self.dead_letters = 0  # readings in the dead-letter table for this uplink

    @property
    def last_id(self) -> int:
        return self.outbox.last_id

    def subscribe(self, listener: Callable[[list[Row]], None]) -> Callable[[], None]:
        """Like ``Outbox.subscribe``, with only the new rows this uplink needs."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def fetch(self, after: int, upto: int, limit: int) -> list[Row]:
        """``Outbox.fetch`` of the rows this uplink has yet to deliver."""
        return await self.outbox._in_thread(self.outbox._fetch, after, upto, limit, self.bit)

    def ack(self, ids: Iterable[int]) -> None:
        """This uplink's cloud acknowledged these rows; each is deleted once no uplink needs it."""
        self.outbox._ack(self.bit, ids)

    async def dead_letter(self, row: Row, reason: str) -> bool:
        """Move a row this uplink's cloud refused for good to its dead letters; False if it is gone."""
        return await self.outbox._move_to_dead_letters(self.bit, row, reason)

    async def requeue(self, ids: Iterable[int] | None = None) -> int:
        """``Outbox.requeue`` of this uplink's dead letters only."""
        return await self.outbox.requeue(ids, uplink=self.name)

    async def discard(self, ids: Iterable[int] | None = None) -> int:
        """``Outbox.discard`` of this uplink's dead letters only."""
        return await self.outbox.discard(ids, uplink=self.name)

    def balance(self) -> int:
        """``accepted - (acked + depth + dropped_full + expired + dead_letters + discarded)``: 0 when all is accounted for."""
        return self.accepted - (self.acked + self.depth + self.dropped_full + self.expired + self.dead_letters + self.discarded)

    def _tell(self, rows: list[Row]) -> None:
        for listener in list(self._listeners):
            listener(rows)

    def _take(self, count: int) -> None:
        """A stored row this lane needed leaves it (the caller counts where it went)."""
        self.depth -= count
        self.rows -= 1


def _summed(figure: str, doc: str) -> property:
    """A figure of the outbox that is the sum of its lanes' (one uplink's own, when there is one)."""
    return property(lambda outbox: sum(getattr(lane, figure) for lane in outbox._lanes.values()), doc=doc)


class Outbox:
    """Durable queue; ``put`` and ``put_event`` never block the loop."""

    def __init__(self, config: OutboxConfig, state_dir: Path, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.config = config
        self.path = config.path if config.path.is_absolute() else state_dir / config.path
        self.clock = clock  # wall clock: the times an operator reads (created, failed)
        self.monotonic = monotonic  # drives the age clock (ttl, oldest age): never jumps
        self._age_base = 0.0  # the age clock when this process opened the database
        self._age_opened = monotonic()
        self._executor: ThreadPoolExecutor | None = None  # the one thread that touches the database
        self._db: sqlite3.Connection | None = None
        self._pending: list[Sequence[Reading]] = []
        self._pending_count = 0
        self._committing = 0  # readings in the commit under way
        self._rejected_unsaved = 0  # refused on the loop, not yet in a committed counter
        self._stalled = False
        self._pending_events: list[_Event] = []
        self._acked: list[tuple[int, list[int]]] = []  # (the acknowledging lanes' bits, row ids)
        self._tasks = TaskSet()
        self._writer: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[list[Row]], None]] = []
        self._retry = Backoff(initial=0.5, maximum=30.0)
        self._closing = asyncio.Event()
        self._company = asyncio.Event()  # set when readings or events arrive, or the queue must hurry
        self._hurry = 0  # flushes waiting: commit without gathering
        self._last_commit = -math.inf  # loop time of the last commit
        self.commit_error: str | None = None  # why commits fail, while they do
        self.clock_synced = True  # False marks what is stored from now on as ``unsynced``
        self.last_id = 0  # id of the newest committed row
        self._lanes: dict[str, Lane] = {}  # by uplink name, in the order they were named
        self._every = 0  # the bits of every lane: what a new row waits for
        self._by_mask: dict[int, tuple[Lane, ...]] = {}
        # Figures for metrics (readings; an event counts as one). The lanes count the rest.
        self.accepted = 0
        self.rejected = 0  # refused because full (reject_newest)
        self.corrupt = 0  # damaged database files moved aside
        self.abandoned = 0  # stored only for an uplink no longer configured, deleted at open
        self.received = 0  # handed to ``put`` by this process
        self.generation = 0  # of the rows this process stores
        self.open_error: str | None = None  # why the database cannot be opened, while it cannot
        self.depth = 0  # readings in stored rows (whichever uplinks still need them)
        self.bytes = 0
        self.rows = 0
        self.oldest: float | None = None  # when the oldest row was accepted, in the age clock

    # -- uplinks ----------------------------------------------------------

    def lane(self, name: str) -> Lane:
        """The lane of the uplink ``name``; every uplink is named before ``open``."""
        lane = self._lanes.get(name)
        if lane is None:
            if self.is_open:
                raise ValueError(f"outbox: uplink {name!r} was not named before the outbox opened")
            if len(self._lanes) >= MAX_LANES:
                raise ValueError(f"outbox: at most {MAX_LANES} uplinks")
            lane = self._lanes[name] = Lane(self, name)
        return lane

    @property
    def lanes(self) -> list[Lane]:
        return list(self._lanes.values())

    @property
    def uplinks(self) -> list[str]:
        """The names of the uplinks this outbox feeds."""
        return list(self._lanes)

    def _lanes_of(self, waiting: int) -> tuple[Lane, ...]:
        """The lanes whose bits are set in ``waiting``."""
        lanes = self._by_mask.get(waiting)
        if lanes is None:
            lanes = self._by_mask[waiting] = tuple(lane for lane in self._lanes.values() if lane.bit & waiting)
        return lanes

    # The figures each uplink keeps, summed (one uplink's own, when there is one).

    acked = _summed("acked", "Removed after the cloud acknowledged them")
    dropped_full = _summed("dropped_full", "Removed to make room (drop_oldest)")
    expired = _summed("expired", "Removed by ttl")
    dead_lettered = _summed("dead_lettered", "Moved to the dead-letter table (rows the cloud refused for good)")
    requeued = _summed("requeued", "Moved back from it by an operator")
    discarded = _summed("discarded", "Deleted from it, by an operator or its bound")
    dead_letters = _summed("dead_letters", "Readings in the dead-letter table")

    # -- lifecycle -------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the database and start a new generation; then commit what
        ``put`` queued meanwhile. A damaged file is moved aside and a fresh one started;
        a failure to open is raised and kept in ``open_error`` (the queue stays in memory)."""
        self._closing.clear()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        try:
            await self._in_thread(self._open)
        except (sqlite3.Error, OSError) as exc:
            self.open_error = f"{self.path}: {exc}"
            raise
        self.open_error = None
        self._wake()

    async def close(self) -> None:
        """Commit everything handed over, then close the database."""
        self._closing.set()
        self._company.set()
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

    @property
    def generation_path(self) -> Path:
        """The file that keeps the newest generation, beside the database."""
        return self.path.with_name(self.path.stem + ".generation")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        corrupt = 0
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            corrupt = 1
            aside = self._move_aside(exc)
            log.error("outbox %s is damaged (%s): moved aside to %s; starting a new one", self.path, exc, aside.name)
            db = self._connect()
        self._assign_lanes(db)
        self._recount(db)
        self.corrupt += corrupt
        self.generation = self._next_generation(db)
        (stored_age,) = db.execute("SELECT coalesce((SELECT value FROM counters WHERE name='age_clock'), 0)").fetchone()
        self._age_base, self._age_opened = float(stored_age), self.monotonic()
        # Rows of an older release were stamped by the wall clock only: they start ageing now.
        db.execute("UPDATE outbox SET age_clock = ? WHERE age_clock IS NULL", (self._age_base,))
        (self.last_id,) = db.execute("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name='outbox'").fetchone()
        # What a crash left in memory was never accepted; what waits now is still to come.
        self.received = self.accepted + self.rejected + self._rejected_unsaved + self.pending
        self._db = db
        self._update_oldest()
        log.info("outbox %s: %d readings waiting (%d bytes), generation %d", self.path, self.depth, self.bytes, self.generation)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {verdict}")
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,"
                " subject TEXT NOT NULL, created REAL NOT NULL, count INTEGER NOT NULL, size INTEGER NOT NULL,"
                " payload BLOB NOT NULL, gen INTEGER NOT NULL DEFAULT 0, age_clock REAL, waiting INTEGER NOT NULL DEFAULT 1)"
            )
            if "gen" not in {column[1] for column in db.execute("PRAGMA table_info(outbox)")}:
                db.execute("ALTER TABLE outbox ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")  # a file of an older release
            if "age_clock" not in {column[1] for column in db.execute("PRAGMA table_info(outbox)")}:
                db.execute("ALTER TABLE outbox ADD COLUMN age_clock REAL")  # likewise; filled in by _open
            if "waiting" not in {column[1] for column in db.execute("PRAGMA table_info(outbox)")}:
                db.execute("ALTER TABLE outbox ADD COLUMN waiting INTEGER NOT NULL DEFAULT 1")  # likewise: the first uplink's
            db.execute(_CREATE_DEAD_LETTER.format(table="dead_letter"))
            db.execute("CREATE TABLE IF NOT EXISTS uplinks (name TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE)")
            for table in ("outbox", "dead_letter"):  # files of older releases have no clock mark
                if "unsynced" not in {column[1] for column in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN unsynced INTEGER NOT NULL DEFAULT 0")
        except BaseException:
            db.close()
            raise
        return db

    def _assign_lanes(self, db: sqlite3.Connection) -> None:
        """Give every named uplink its bit (an uplink keeps its bit across restarts), let the first
        take over a file of an older release (or one none of whose uplinks is named any more), and
        remove the uplinks no longer named, in one transaction. Named none, the outbox keeps the
        uplinks its file has (or one named ``DEFAULT_LANE``)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            stored: dict[str, int] = dict(db.execute("SELECT name, bit FROM uplinks").fetchall())
            older_release = not stored
            if not self._lanes:
                for name in sorted(stored, key=stored.__getitem__) or [DEFAULT_LANE]:
                    self._lanes[name] = Lane(self, name)
            first = next(iter(self._lanes))
            if stored and not any(name in stored for name in self._lanes):
                self._rename_lane(db, min(stored, key=stored.__getitem__), first, stored)
            for name in [name for name in stored if name not in self._lanes]:
                self._remove_lane(db, name, stored.pop(name))
            for name, lane in self._lanes.items():
                if name not in stored:
                    stored[name] = min(set(range(MAX_LANES)) - set(stored.values()))
                    db.execute("INSERT INTO uplinks (name, bit) VALUES (?, ?)", (name, stored[name]))
                lane.bit = 1 << stored[name]
            if older_release:
                self._adopt_older_release(db, first)
            self._every = sum(lane.bit for lane in self._lanes.values())
            self._by_mask = {}
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _adopt_older_release(self, db: sqlite3.Connection, first: str) -> None:
        """A file without uplinks: its rows (bit 0), counters and dead letters become the first uplink's."""
        db.execute("INSERT OR IGNORE INTO counters (name, value) SELECT ?, value FROM counters WHERE name = 'accepted'",
                   (_lane_counter(first, 0, "accepted"),))  # fmt: skip
        if "uplink" not in {column[1] for column in db.execute("PRAGMA table_info(dead_letter)")}:
            db.execute("ALTER TABLE dead_letter RENAME TO dead_letter_older")
            db.execute(_CREATE_DEAD_LETTER.format(table="dead_letter"))
            db.execute(f"INSERT INTO dead_letter ({_DEAD_COLUMNS}, uplink) SELECT {_DEAD_COLUMNS}, ? FROM dead_letter_older",
                       (first,))  # fmt: skip
            db.execute("DROP TABLE dead_letter_older")

    @staticmethod
    def _rename_lane(db: sqlite3.Connection, old: str, new: str, stored: dict[str, int]) -> None:
        log.warning("outbox: none of its uplinks is configured any more; %s takes over what %s had to deliver", new, old)
        db.execute("UPDATE uplinks SET name = ? WHERE name = ?", (new, old))
        position = stored[old]
        for name in _LANE_COUNTERS:
            db.execute("UPDATE counters SET name = ? WHERE name = ?",
                       (_lane_counter(new, position, name), _lane_counter(old, position, name)))  # fmt: skip
        db.execute("UPDATE dead_letter SET uplink = ? WHERE uplink = ?", (new, old))
        stored[new] = stored.pop(old)

    def _remove_lane(self, db: sqlite3.Connection, name: str, bit: int) -> None:
        """An uplink no longer configured: clear its bit; delete what only it still needed."""
        mask = 1 << bit
        db.execute("UPDATE outbox SET waiting = waiting & ? WHERE waiting & ?", (~mask, mask))
        stored = sum(count for (count,) in db.execute("DELETE FROM outbox WHERE waiting = 0 RETURNING count").fetchall())
        dead = sum(count for (count,) in db.execute("DELETE FROM dead_letter WHERE uplink = ? RETURNING count", (name,)).fetchall())
        db.executemany("DELETE FROM counters WHERE name = ?", [(_lane_counter(name, bit, counter),) for counter in _LANE_COUNTERS])
        db.execute("DELETE FROM uplinks WHERE name = ?", (name,))
        db.execute("INSERT INTO counters (name, value) VALUES ('abandoned', ?)"
                   " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (stored + dead,))  # fmt: skip
        log.warning("outbox: uplink %s is no longer configured; deleted the %d readings only it had still to deliver"
                    " and its %d readings in the dead letters", name, stored, dead)  # fmt: skip

    def _move_aside(self, exc: sqlite3.DatabaseError) -> Path:
        """Rename a damaged database (with its WAL and shared-memory files) out of the way."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                source.replace(aside.with_name(aside.name + suffix))
        return aside

    def _next_generation(self, db: sqlite3.Connection) -> int:
        """Start a generation above any this outbox (file or database) has used, durably."""
        try:
            stored = int(self.generation_path.read_text().strip() or 0)
        except FileNotFoundError:
            stored = 0
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s); the generation continues from the database", self.generation_path, exc)
            stored = 0
        (in_db,) = db.execute(
            "SELECT max(coalesce((SELECT value FROM counters WHERE name='generation'), 0),"
            " coalesce((SELECT max(gen) FROM outbox), 0), coalesce((SELECT max(gen) FROM dead_letter), 0))"
        ).fetchone()
        generation = max(stored, in_db) + 1
        # Durable before any row (and so any message) of this generation exists.
        write_atomic(self.generation_path, f"{generation}\n".encode())
        db.execute(
            "INSERT INTO counters (name, value) VALUES ('generation', ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            (generation,),
        )
        return generation

    def _recount(self, db: sqlite3.Connection) -> None:
        """Set the figures (the outbox's and each lane's) from what is committed."""
        stored = dict(db.execute("SELECT name, value FROM counters").fetchall())
        for name in _COUNTERS:
            if name in stored:
                setattr(self, name, stored[name])
        depth, size, rows = db.execute("SELECT total(count), total(size), count(*) FROM outbox").fetchone()
        self.depth, self.bytes, self.rows = int(depth), int(size), rows
        dead = dict(db.execute("SELECT uplink, total(count) FROM dead_letter GROUP BY uplink").fetchall())
        for lane in self._lanes.values():
            position = lane.bit.bit_length() - 1
            for name in _LANE_COUNTERS:
                setattr(lane, name, stored.get(_lane_counter(lane.name, position, name), 0))
            depth, rows = db.execute("SELECT total(count), count(*) FROM outbox WHERE waiting & ?", (lane.bit,)).fetchone()
            lane.depth, lane.rows = int(depth), rows
            lane.dead_letters = int(dead.get(lane.name, 0))

    def _save_counters(self, db: sqlite3.Connection) -> None:
        figures = [(name, getattr(self, name)) for name in _COUNTERS]
        for lane in self._lanes.values():
            position = lane.bit.bit_length() - 1
            figures += [(_lane_counter(lane.name, position, name), getattr(lane, name)) for name in _LANE_COUNTERS]
        db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
            [*figures, ("age_clock", self.age_clock())],
        )

    def age_clock(self) -> float:
        """Seconds this outbox has been open in total: the clock rows age by (never jumps)."""
        return self._age_base + self.monotonic() - self._age_opened

    def _close(self) -> None:
        if self._db is not None:
            try:  # keep the time since the last commit; a crash loses only that much age
                self._db.execute(
                    "INSERT INTO counters (name, value) VALUES ('age_clock', ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                    (self.age_clock(),),
                )
            except sqlite3.Error as exc:
                log.warning("outbox: cannot store its age clock at close (%s)", exc)
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
        self.received += len(readings)
        if self._pending_count >= MAX_PENDING:
            if not self._stalled:
                log.error("outbox: %d readings wait for the disk; refusing more until it catches up", MAX_PENDING)
                self._stalled = True
            self._rejected_unsaved += len(readings)
            return
        self._pending.append(readings if self.clock_synced else _Unsynced(readings))
        self._pending_count += len(readings)
        self._company.set()
        self._wake()

    def put_event(self, subject: str, data: dict[str, Any], uplink: str | None = None) -> None:
        """Queue one event (a JSON object; NaN and infinities become null) for the next commit,
        for every uplink, or for the one named ``uplink`` (the answer to a command it brought)."""
        self.received += 1
        lane = None if uplink is None else self._lanes.get(uplink)
        self._pending_events.append(_Event(subject, _event_json(data), not self.clock_synced, lane))
        self._company.set()
        self._wake()

    def ack(self, ids: Iterable[int]) -> None:
        """Every uplink has these rows: delete them in the next commit (an uplink acks through its lane)."""
        self._ack(self._every, ids)

    def _ack(self, mask: int, ids: Iterable[int]) -> None:
        acked = list(ids)
        if acked:
            self._acked.append((mask, acked))
            self._wake()

    def subscribe(self, listener: Callable[[list[Row]], None]) -> Callable[[], None]:
        """Call ``listener`` on the loop after every commit with its new rows (maybe none),
        and with none after a commit that failed."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _tell(self, rows: list[Row], waiting: list[int] | None = None) -> None:
        """Tell the listeners of new rows, and each lane of those it needs (``waiting``: each row's
        lanes; ``None``: every lane, as for a commit)."""
        for listener in list(self._listeners):
            listener(rows)
        for lane in list(self._lanes.values()):
            lane._tell(rows if waiting is None else [row for row, mask in zip(rows, waiting, strict=True) if mask & lane.bit])

    async def flush(self) -> None:
        """Return once everything handed over so far is committed."""
        self._hurry += 1
        self._company.set()
        try:
            while self._writer is not None:
                await asyncio.shield(self._writer)
        finally:
            self._hurry -= 1

    def _wake(self) -> None:
        if self._writer is None and self._db is not None:
            self._writer = self._tasks.spawn(self._drain(), name="outbox writer")

    async def _drain(self) -> None:
        try:
            while self._pending or self._pending_events or self._acked or self._rejected_unsaved:
                await self._gather()
                batches, self._pending = self._pending, []
                self._committing = self._pending_count + len(self._pending_events)
                self._pending_count, self._stalled = 0, False
                events, self._pending_events = self._pending_events, []
                acked, self._acked = self._acked, []
                refused, self._rejected_unsaved = self._rejected_unsaved, 0
                try:
                    rows, waiting = await self._in_thread(self._commit, batches, events, acked, refused)
                except sqlite3.Error as exc:
                    self._rejected_unsaved += refused
                    if self._closing.is_set() and not (batches or events or acked):
                        break  # only the counters were left to save, and they cannot be
                    await self._failed(exc, batches, events, acked)
                    continue
                finally:
                    self._committing = 0
                    self._last_commit = asyncio.get_running_loop().time()
                if self.commit_error is not None:
                    log.warning("outbox: commits work again")
                    self.commit_error = None
                    self._retry.reset()
                if rows:
                    self.last_id = rows[-1].id  # set on the loop, together with telling the listeners
                self._tell(rows, waiting)
        finally:
            self._writer = None

    async def _gather(self) -> None:
        """Wait so that one commit takes more: what arrives within ``COMMIT_INTERVAL`` of the
        last commit (one transaction, and one message per device, for many polls), and
        acknowledgements alone until readings come to share their transaction, at most
        ``ACK_DELAY`` (a gateway that sends one reading a second commits once per reading)."""
        if self._hurry or self._closing.is_set():
            return
        if not (self._pending or self._pending_events or self._rejected_unsaved):
            self._company.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ACK_DELAY):
                    await self._company.wait()
            return
        wait = self._last_commit + COMMIT_INTERVAL - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _failed(self, exc: sqlite3.Error, batches: list[Sequence[Reading]], events: list[_Event],
                      acked: list[tuple[int, list[int]]]) -> None:  # fmt: skip
        """Put what a failed commit carried back in front of the queue and wait before the next try."""
        readings = sum(len(b) for b in batches)
        if self._closing.is_set():
            log.error("outbox: cannot commit at shutdown (%s); %d readings and %d events are lost", exc, readings, len(events))
            self._rejected_unsaved += readings + len(events)
            return
        if self.commit_error is None:
            log.error("outbox: cannot commit (%s); keeping %d readings in memory and trying again", exc, readings)
        self.commit_error = str(exc)
        self._pending[:0] = batches
        self._pending_count += readings
        self._pending_events[:0] = events
        self._acked[:0] = acked
        self._tell([])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self._retry.next_delay())

    # -- worker thread ---------------------------------------------------

    def _commit(self, batches: list[Sequence[Reading]], events: list[_Event],
                acked: list[tuple[int, list[int]]], refused: int = 0) -> tuple[list[Row], list[int]]:  # fmt: skip
        """Commit what was handed over and acknowledged; the new rows, and the lanes' bits each waits for."""
        db = self._db
        assert db is not None, "outbox is not open"
        now, age = self.clock(), self.age_clock()
        records = self._pack(batches, events)
        db.execute("BEGIN IMMEDIATE")
        try:
            self.rejected += refused
            if acked:
                self._delete_acked(db, acked)
            self._expire(db, age)
            records = self._make_room(db, records)
            rows, waiting = [], []
            gen = self.generation
            for kind, subject, count, size, payload, unsynced, mask in records:
                cursor = db.execute(_INSERT_ROW, (kind, subject, now, age, count, size, payload, gen, unsynced, mask))
                rows.append(Row(cursor.lastrowid or 0, kind, subject, count, payload, gen, unsynced))
                waiting.append(mask)
                self.depth += count
                self.accepted += count
                for lane in self._lanes_of(mask):
                    lane.accepted += count
                    lane.depth += count
                    lane.rows += 1
            # The counters commit with the rows they count, so they stay exact across crashes.
            self._save_counters(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite itself rolls back on some errors (a full disk)
                db.execute("ROLLBACK")
            self._recount(db)  # undo what this transaction had counted
            raise
        self.bytes += sum(r[3] for r in records)
        self.rows += len(rows)
        self._update_oldest()
        return rows, waiting

    def _pack(self, batches: list[Sequence[Reading]], events: list[_Event]) -> list[tuple[Any, ...]]:
        """Rows ``(kind, subject, count, size, payload, unsynced, waiting)``: a device's readings
        in order, unsynced ones apart (they come first: a clock becomes synchronised); readings
        wait for every uplink, an event for every uplink or the one it is for."""
        synced: dict[str, list[tuple[Any, ...]]] = {}
        unsynced: dict[str, list[tuple[Any, ...]]] = {}
        for batch in batches:
            groups = unsynced if type(batch) is _Unsynced else synced
            for reading in batch:
                group = groups.get(reading[0])
                if group is None:
                    groups[reading[0]] = group = []
                group.append(reading[1:])
        per_row, every = self.config.row_readings, self._every
        records: list[tuple[Any, ...]] = []
        for mark, groups in ((True, unsynced), (False, synced)):
            for device, group in groups.items():
                for start in range(0, len(group), per_row):
                    chunk = group[start : start + per_row]
                    payload = _encode(chunk)
                    records.append((READINGS, device, len(chunk), len(payload) + len(device) + ROW_OVERHEAD, payload, mark, every))
        for subject, payload, mark, lane in events:
            mask = every if lane is None else lane.bit
            records.append((EVENT, subject, 1, len(payload) + len(subject) + ROW_OVERHEAD, payload, mark, mask))
        return records

    def _delete_acked(self, db: sqlite3.Connection, acked: list[tuple[int, list[int]]]) -> None:
        """Clear the acknowledging lanes' bits; a row no uplink needs any more is deleted."""
        by_mask: dict[int, list[int]] = {}
        for mask, ids in acked:
            by_mask.setdefault(mask, []).extend(ids)
        for mask, ids in by_mask.items():
            if mask & self._every == self._every:  # every uplink has them
                for low, high in _ranges(ids):
                    for count, size, waiting in db.execute(
                        "DELETE FROM outbox WHERE id BETWEEN ? AND ? RETURNING count, size, waiting", (low, high)
                    ).fetchall():
                        self._delete_row(count, size)
                        for lane in self._lanes_of(waiting):
                            lane._take(count)
                            lane.acked += count
                continue
            for lane in self._lanes_of(mask):  # one uplink (a lane acks alone)
                for low, high in _ranges(ids):
                    for count, size in db.execute(
                        "DELETE FROM outbox WHERE id BETWEEN ? AND ? AND waiting = ? RETURNING count, size", (low, high, lane.bit)
                    ).fetchall():
                        self._delete_row(count, size)
                        lane._take(count)
                        lane.acked += count
                    for (count,) in db.execute(
                        "UPDATE outbox SET waiting = waiting & ? WHERE id BETWEEN ? AND ? AND waiting & ? RETURNING count",
                        (~lane.bit, low, high, lane.bit),
                    ).fetchall():
                        lane._take(count)
                        lane.acked += count

    def _delete_row(self, count: int, size: int) -> None:
        """A stored row is gone (each lane that needed it counts where)."""
        self.depth -= count
        self.bytes -= size
        self.rows -= 1

    def _expire(self, db: sqlite3.Connection, age: float) -> None:
        """Delete rows older than ``ttl``; ``age`` is the age clock now."""
        if self.oldest is None or self.oldest >= age - self.config.ttl:
            return
        gone = db.execute("DELETE FROM outbox WHERE age_clock < ? RETURNING count, size, waiting", (age - self.config.ttl,)).fetchall()
        for count, size, waiting in gone:
            self._delete_row(count, size)
            for lane in self._lanes_of(waiting):
                lane._take(count)
                lane.expired += count
        if gone:
            log.warning("outbox: %d readings older than %g s expired", sum(c for c, _, _ in gone), self.config.ttl)

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
            chunk = db.execute("SELECT id, count, size, waiting FROM outbox ORDER BY id LIMIT 256").fetchall()
            if not chunk:
                break
            upto = chunk[0][0]
            for row_id, count, size, waiting in chunk:
                upto = row_id
                need -= size
                self._delete_row(count, size)
                for lane in self._lanes_of(waiting):
                    lane._take(count)
                    lane.dropped_full += count
                dropped += count
                if need <= 0:
                    break
            db.execute("DELETE FROM outbox WHERE id <= ?", (upto,))
        while need > 0 and records:
            record = records.pop(0)
            need -= record[3]
            dropped += record[2]
            self.accepted += record[2]  # taken in, and pushed out at once by newer readings
            for lane in self._lanes_of(record[6]):
                lane.accepted += record[2]
                lane.dropped_full += record[2]
        log.warning("outbox full: dropped the %d oldest readings", dropped)
        return records

    def _update_oldest(self) -> None:
        assert self._db is not None
        row = self._db.execute("SELECT age_clock FROM outbox ORDER BY id LIMIT 1").fetchone()
        self.oldest = row[0] if row else None

    # -- reading back (backlog) ------------------------------------------

    async def fetch(self, after: int, upto: int, limit: int) -> list[Row]:
        """Rows with ``after < id <= upto`` in id order, at most ``limit`` readings' worth (at least one row)."""
        return await self._in_thread(self._fetch, after, upto, limit, -1)

    def _fetch(self, after: int, upto: int, limit: int, mask: int) -> list[Row]:
        assert self._db is not None, "outbox is not open"
        rows: list[Row] = []
        total = 0
        cursor = self._db.execute(
            "SELECT id, kind, subject, count, payload, gen, unsynced FROM outbox WHERE id > ? AND id <= ? AND waiting & ? ORDER BY id",
            (after, upto, mask),
        )
        for row in cursor:
            rows.append(Row(*row[:6], bool(row[6])))
            total += row[3]
            if total >= limit:
                break
        cursor.close()
        return rows

    # -- dead letters ----------------------------------------------------

    async def dead_letter(self, row: Row, reason: str) -> bool:
        """Move a row that every uplink's cloud refused for good out of the queue; False if it is
        already gone. (An uplink moves a row it was refused through its lane.)"""
        return await self._move_to_dead_letters(self._every, row, reason)

    async def _move_to_dead_letters(self, mask: int, row: Row, reason: str) -> bool:
        moved = await self._in_thread(self._dead_letter, mask, row.id, reason)
        self._tell([])
        if moved:
            log.error("outbox: message %d:%d (%s, %d readings) moved to the dead letters of %s: %s", row.gen, row.id,
                      row.subject, row.count, ", ".join(lane.name for lane in self._lanes_of(mask)), reason)  # fmt: skip
        return moved

    def _dead_letter(self, mask: int, row_id: int, reason: str) -> bool:
        def move(db: sqlite3.Connection) -> bool:
            found = db.execute("SELECT count, size, waiting FROM outbox WHERE id = ? AND waiting & ?", (row_id, mask)).fetchone()
            if found is None:
                return False
            count, size, waiting = found
            failed = self.clock()
            for lane in self._lanes_of(waiting & mask):
                db.execute(
                    f"INSERT INTO dead_letter ({_DEAD_COLUMNS}, uplink) SELECT id, kind, subject, created, count, size, payload,"
                    " gen, ?, ?, unsynced, ? FROM outbox WHERE id = ?",
                    (reason, failed, lane.name, row_id),
                )
                lane._take(count)
                lane.dead_lettered += count
                lane.dead_letters += count
            if waiting & ~mask:
                db.execute("UPDATE outbox SET waiting = ? WHERE id = ?", (waiting & ~mask, row_id))
            else:
                db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                self._delete_row(count, size)
            self._trim_dead_letters(db)
            return True

        return self._transaction(move)

    def _trim_dead_letters(self, db: sqlite3.Connection) -> None:
        keep = self.config.dead_letter_rows
        for count, uplink in db.execute(
            "DELETE FROM dead_letter WHERE rowid NOT IN (SELECT rowid FROM dead_letter ORDER BY id DESC LIMIT ?) RETURNING count, uplink",
            (keep,),
        ).fetchall():
            lane = self._lanes[uplink]
            lane.dead_letters -= count
            lane.discarded += count

    async def list_dead_letters(self, limit: int = 1000, uplink: str | None = None) -> list[DeadLetter]:
        """The first ``limit`` dead letters (of one uplink with ``uplink``), oldest first."""

        def read() -> list[DeadLetter]:
            assert self._db is not None, "outbox is not open"
            return [
                DeadLetter(id, gen, "readings" if kind == READINGS else "event", subject, count, size, created, failed, reason, name)
                for id, gen, kind, subject, count, size, created, failed, reason, name in self._db.execute(
                    "SELECT id, gen, kind, subject, count, size, created, failed, reason, uplink FROM dead_letter"
                    " WHERE coalesce(?, uplink) = uplink ORDER BY id, uplink LIMIT ?",
                    (uplink, limit),
                )
            ]

        return await self._in_thread(read)

    async def requeue(self, ids: Iterable[int] | None = None, uplink: str | None = None) -> int:
        """Put dead letters (all of them with ``None``; of one uplink with ``uplink``) back in the
        queue as new messages, each for the uplink that was refused it; returns how many readings
        went back. They are sent like new rows, and their age (for ``ttl``) starts again from zero."""
        wanted = None if ids is None else list(ids)

        def move(db: sqlite3.Connection) -> tuple[list[Row], list[int]]:
            rows, waiting = [], []
            gen, age = self.generation, self.age_clock()
            for rowid, name, _id, kind, subject, created, count, size, payload, unsynced in self._select_dead(db, wanted, uplink):
                lane = self._lanes[name]
                cursor = db.execute(_INSERT_ROW, (kind, subject, created, age, count, size, payload, gen, unsynced, lane.bit))
                db.execute("DELETE FROM dead_letter WHERE rowid = ?", (rowid,))
                rows.append(Row(cursor.lastrowid or 0, kind, subject, count, payload, gen, bool(unsynced)))
                waiting.append(lane.bit)
                self.depth += count
                self.bytes += size
                self.rows += 1
                lane.depth += count
                lane.rows += 1
                lane.dead_letters -= count
                lane.requeued += count
            return rows, waiting

        rows, waiting = await self._in_thread(self._transaction, move)
        if rows:
            self.last_id = max(self.last_id, rows[-1].id)
            self._update_oldest_soon()
            self._tell(rows, waiting)
        return sum(row.count for row in rows)

    async def discard(self, ids: Iterable[int] | None = None, uplink: str | None = None) -> int:
        """Delete dead letters (all of them with ``None``; of one uplink with ``uplink``); returns how many readings went."""
        wanted = None if ids is None else list(ids)

        def delete(db: sqlite3.Connection) -> int:
            total = 0
            for rowid, name, _id, _kind, _subject, _created, count, *_ in self._select_dead(db, wanted, uplink):
                db.execute("DELETE FROM dead_letter WHERE rowid = ?", (rowid,))
                lane = self._lanes[name]
                lane.dead_letters -= count
                lane.discarded += count
                total += count
            return total

        return await self._in_thread(self._transaction, delete)

    @staticmethod
    def _select_dead(db: sqlite3.Connection, ids: list[int] | None, uplink: str | None) -> list[tuple[Any, ...]]:
        query = "SELECT rowid, uplink, id, kind, subject, created, count, size, payload, unsynced FROM dead_letter"
        query += " WHERE coalesce(?, uplink) = uplink"
        if ids is None:
            return db.execute(query + " ORDER BY id, uplink", (uplink,)).fetchall()
        found = []
        for row_id in ids:
            found.extend(db.execute(query + " AND id = ? ORDER BY uplink", (uplink, row_id)).fetchall())
        return found

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one transaction that also saves the counters (worker thread)."""
        db = self._db
        assert db is not None, "outbox is not open"
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
            self._save_counters(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._recount(db)
            raise
        return result

    def _update_oldest_soon(self) -> None:
        if self._executor is not None:
            self._executor.submit(self._update_oldest)

    # -- metrics ---------------------------------------------------------

    @property
    def pending(self) -> int:
        """Readings (and events) handed over and not yet committed or refused."""
        return self._pending_count + len(self._pending_events) + self._committing

    @property
    def refused(self) -> int:
        """Readings refused before they were stored (full, or a disk that could not keep up)."""
        return self.rejected + self._rejected_unsaved

    def balance(self) -> tuple[int, int]:
        """The accounting equations as differences (both 0 when every reading is accounted for):
        ``received - (pending + accepted + refused)``, and the first lane's ``Lane.balance()``
        that is not 0 (``accepted - (acked + depth + dropped_full + expired + dead_letters +
        discarded)`` of that uplink)."""
        taken = self.received - (self.pending + self.accepted + self.refused)
        kept = next((difference for difference in (lane.balance() for lane in self._lanes.values()) if difference), 0)
        return taken, kept

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.refused + self.expired

    # -- what the rest of the gateway sees ---------------------------------

    name = "outbox"
    labels: dict[str, str] = {}

    @property
    def state(self) -> State:
        return State.RUNNING if self.is_open else State.STOPPED

    def health_problems(self) -> list[str]:
        problems = []
        full = self.bytes / self.config.max_bytes
        if full >= HEALTH_FULL:
            problems.append(f"outbox is {full:.0%} full")
        if self.open_error is not None:
            problems.append(f"outbox cannot open: {self.open_error}")
        if self.commit_error is not None:
            problems.append(f"outbox cannot store readings: {self.commit_error}")
        return problems

    def stats(self) -> OutboxStats:
        return OutboxStats(
            depth=self.depth,
            bytes=self.bytes,
            rows=self.rows,
            oldest_age=None if self.oldest is None else max(0.0, self.age_clock() - self.oldest),
            accepted=self.accepted,
            dropped=self.dropped,
            dropped_full=self.dropped_full,
            rejected=self.refused,
            expired=self.expired,
            acked=self.acked,
            dead_letters=self.dead_letters,
            dead_lettered=self.dead_lettered,
            requeued=self.requeued,
            discarded=self.discarded,
            corrupt=self.corrupt,
            abandoned=self.abandoned,
            generation=self.generation,
            commit_failing=int(self.commit_error is not None),
            open_failing=int(self.open_error is not None),
        )


_dumps = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode


def _encode(chunk: list[tuple[Any, ...]]) -> bytes:
    """JSON for ``[key, value, ts, quality]`` tuples; NaN and infinities (not JSON) become null."""
    try:
        return _dumps(chunk).encode()
    except ValueError:
        return _dumps([(k, None if isinstance(v, float) and not math.isfinite(v) else v, t, q) for k, v, t, q in chunk]).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _event_json(data: dict[str, Any]) -> bytes:
    """Strict JSON (RFC 8259) for an event."""
    try:
        return _dumps(data).encode()
    except ValueError:
        return _dumps(_finite(data)).encode()


def _ranges(ids: list[int]) -> list[tuple[int, int]]:
    """Collapse ids into inclusive ``(low, high)`` runs of consecutive ids."""
    ids = sorted(set(ids))
    ranges: list[tuple[int, int]] = []
    if not ids:
        return ranges
    low = high = ids[0]
    for value in ids[1:]:
        if value != high + 1:
            ranges.append((low, high))
            low = value
        high = value
    ranges.append((low, high))
    return ranges
