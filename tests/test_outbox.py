"""The outbox: durable, ordered, bounded by bytes and age, every drop counted."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from edged.model import Reading
from edged.outbox import EVENT, Outbox, OutboxConfig


def readings(device: str, start: int, n: int) -> list[Reading]:
    return [Reading(device, "v", i, 1_700_000_000.0 + i) for i in range(start, start + n)]


def stored(outbox: Outbox) -> list[tuple[str, int]]:
    """(device, value) of every stored reading in row order, read from the file itself."""
    with sqlite3.connect(outbox.path) as db:
        rows = db.execute("SELECT kind, subject, payload FROM outbox ORDER BY id").fetchall()
    return [(subject, r[1]) for kind, subject, payload in rows if kind == 0 for r in json.loads(payload)]


def stored_bytes(outbox: Outbox) -> int:
    with sqlite3.connect(outbox.path) as db:
        return db.execute("SELECT total(size) FROM outbox").fetchone()[0]


async def opened(tmp_path: Path, clock: object = None, monotonic: object = None, **config: object) -> Outbox:
    clocks = {name: f for name, f in (("clock", clock), ("monotonic", monotonic)) if f}
    outbox = Outbox(OutboxConfig.model_validate(config), tmp_path, **clocks)
    await outbox.open()
    return outbox


async def test_committed_readings_survive_a_restart_in_order_and_ids_never_repeat(tmp_path: Path) -> None:
    outbox = await opened(tmp_path, row_readings=50)
    for start in range(0, 300, 100):
        outbox.put(readings("a", start, 100) + readings("b", start, 100))
    outbox.put_event("device_status", {"device": "a", "online": False})
    await outbox.close()

    again = await opened(tmp_path, row_readings=50)
    assert (again.depth, again.accepted) == (601, 601), "counters are stored with the rows"
    rows = await again.fetch(0, again.last_id, 10_000)
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert max(r.count for r in rows) <= 50
    assert [v for d, v in stored(again) if d == "a"] == list(range(300))
    assert [v for d, v in stored(again) if d == "b"] == list(range(300))
    assert rows[-1].kind == EVENT
    assert json.loads(rows[-1].payload) == {"device": "a", "online": False}

    again.ack(r.id for r in rows)
    await again.flush()
    assert (again.depth, again.bytes, again.rows, again.acked) == (0, 0, 0, 601)
    last = again.last_id
    again.put(readings("a", 300, 1))
    await again.flush()
    assert again.last_id == last + 1, "a message id is never reused after deletes"
    await again.close()


async def test_ack_deletes_exactly_the_acknowledged_rows(tmp_path: Path) -> None:
    outbox = await opened(tmp_path, row_readings=10)
    outbox.put(readings("a", 0, 100))
    await outbox.flush()
    rows = await outbox.fetch(0, outbox.last_id, 1000)
    outbox.ack([rows[0].id, rows[1].id, rows[5].id, rows[9].id])
    await outbox.flush()
    left = [r.id for r in await outbox.fetch(0, outbox.last_id, 1000)]
    assert left == [r.id for i, r in enumerate(rows) if i not in (0, 1, 5, 9)]
    assert outbox.depth == 60
    await outbox.close()


async def test_drop_oldest_keeps_the_newest_within_the_byte_cap_and_counts_every_drop(tmp_path: Path) -> None:
    cap = 20_000
    outbox = await opened(tmp_path, max_bytes=cap, row_readings=20)
    handed = 0
    for start in range(0, 5000, 250):
        outbox.put(readings("a", start, 250))
        handed += 250
        await outbox.flush()
        assert outbox.bytes == stored_bytes(outbox) <= cap
    kept = [v for _, v in stored(outbox)]
    assert outbox.dropped_full > 0
    assert outbox.dropped_full + outbox.depth == handed
    assert len(kept) == outbox.depth
    assert kept == list(range(handed - len(kept), handed)), "the oldest went first"
    await outbox.close()


async def test_reject_newest_keeps_the_oldest_and_counts_the_rejected(tmp_path: Path) -> None:
    cap = 20_000
    outbox = await opened(tmp_path, max_bytes=cap, row_readings=20, policy="reject_newest")
    for start in range(0, 5000, 250):
        outbox.put(readings("a", start, 250))
        await outbox.flush()
        assert outbox.bytes == stored_bytes(outbox) <= cap
    kept = [v for _, v in stored(outbox)]
    assert outbox.rejected > 0
    assert outbox.rejected + outbox.accepted == 5000
    assert kept == list(range(len(kept))), "what was accepted stays; newcomers are refused"
    await outbox.close()


async def test_readings_older_than_the_ttl_expire_and_are_counted(tmp_path: Path) -> None:
    now = [1000.0]
    outbox = await opened(tmp_path, monotonic=lambda: now[0], ttl="1h")
    outbox.put(readings("a", 0, 30))
    await outbox.flush()
    now[0] += 1800
    outbox.put(readings("a", 30, 20))
    await outbox.flush()
    assert outbox.stats().oldest_age == 1800
    now[0] += 1801
    outbox.put(readings("a", 50, 5))
    await outbox.flush()
    assert outbox.expired == 30
    assert [v for _, v in stored(outbox)] == list(range(30, 55))
    assert outbox.dropped == 30
    await outbox.close()


async def test_close_commits_everything_handed_over(tmp_path: Path) -> None:
    outbox = await opened(tmp_path)
    for start in range(0, 10_000, 100):
        outbox.put(readings("a", start, 100))  # no await in between: all still in memory
    await outbox.close()
    again = await opened(tmp_path)
    assert again.depth == 10_000
    await again.close()


def test_config_takes_sizes_and_any_case_and_says_what_is_wrong() -> None:
    config = OutboxConfig.model_validate({"max_bytes": "64MiB", "synchronous": "FULL", "ttl": "2d"})
    assert (config.max_bytes, config.synchronous, config.ttl) == (64 * 2**20, "full", 172800.0)
    with pytest.raises(ValidationError, match="drop_oldest"):
        OutboxConfig.model_validate({"policy": "drop_newest"})
    with pytest.raises(ValidationError, match="max_bytes"):
        OutboxConfig.model_validate({"max_bytes": "lots"})


async def test_a_stalled_disk_bounds_memory_and_counts_what_it_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edged.outbox

    monkeypatch.setattr(edged.outbox, "MAX_PENDING", 150)
    outbox = await opened(tmp_path)
    for start in range(0, 300, 100):
        outbox.put(readings("a", start, 100))  # the writer has had no chance to run
    await outbox.flush()
    assert (outbox.accepted, outbox.rejected) == (200, 100)
    outbox.put(readings("a", 300, 100))
    await outbox.flush()
    assert outbox.accepted == 300, "accepted again once the writer caught up"
    await outbox.close()


async def test_values_that_json_cannot_carry_are_stored_as_null(tmp_path: Path) -> None:
    outbox = await opened(tmp_path)
    outbox.put([Reading("a", "v", float("nan"), 1.0), Reading("a", "w", float("inf"), 1.0), Reading("a", "x", 2.5, 1.0)])
    await outbox.flush()
    assert [v for _, v in stored(outbox)] == [None, None, 2.5]
    await outbox.close()


async def limit_database(outbox: Outbox, pages: int | None) -> None:
    """Make the database file unable to grow (as on a full disk), or let it grow again.

    ``max_page_count`` is a setting of the outbox's own connection, so it is set there."""

    def apply() -> None:
        assert outbox._db is not None
        limit = outbox._db.execute("PRAGMA page_count").fetchone()[0] if pages is None else pages
        outbox._db.execute(f"PRAGMA max_page_count = {limit}")

    await outbox._in_thread(apply)


async def test_a_full_disk_loses_nothing_and_commits_when_there_is_room_again(tmp_path: Path, caplog) -> None:
    outbox = await opened(tmp_path, row_readings=10)
    outbox.put(readings("a", 0, 10))
    await outbox.flush()
    await limit_database(outbox, None)  # no room for another page
    failed = asyncio.Event()
    outbox.subscribe(lambda rows: failed.set() if outbox.commit_error else None)
    outbox.put(readings("a", 10, 5000))
    await asyncio.wait_for(failed.wait(), 10)
    assert "full" in outbox.commit_error
    assert outbox.stats().commit_failing == 1
    assert (outbox.accepted, outbox.rejected) == (10, 0), "nothing accepted, nothing thrown away"
    assert "keeping 5000 readings in memory" in caplog.text

    await limit_database(outbox, 1_000_000)  # room again (the disk was cleaned up)
    await outbox.flush()
    assert outbox.commit_error is None and outbox.stats().commit_failing == 0
    assert (outbox.accepted, outbox.rejected) == (5010, 0)
    assert stored(outbox) == [("a", i) for i in range(5010)]
    await outbox.close()


async def test_what_cannot_be_stored_at_shutdown_is_counted(tmp_path: Path) -> None:
    outbox = await opened(tmp_path, row_readings=10)
    outbox.put(readings("a", 0, 10))
    await outbox.flush()
    await limit_database(outbox, None)
    outbox.put(readings("a", 10, 5000))
    await outbox.close()  # one last try, then give up rather than hang the shutdown
    assert outbox.refused == 5000
    again = await opened(tmp_path)
    # The rows could not be stored, but the counter that records their loss could.
    assert (again.accepted, again.rejected, again.depth) == (10, 5000, 10)
    await again.close()


async def committed_keys(outbox: Outbox, batch: list[Reading]) -> set[tuple[int, int]]:
    """Put ``batch``; return the (generation, id) message keys of the rows it became."""
    rows: list = []
    unsubscribe = outbox.subscribe(rows.extend)
    outbox.put(batch)
    await outbox.flush()
    unsubscribe()
    return {(row.gen, row.id) for row in rows}


def remove_database(directory: Path) -> None:
    for file in directory.glob("outbox.sqlite*"):
        file.unlink()


def moved_aside(directory: Path) -> list[Path]:
    return list(directory.glob("outbox.sqlite.corrupt-*"))


def copy_database(source: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    for file in source.glob("outbox.sqlite*"):
        (target / file.name).write_bytes(file.read_bytes())


async def test_a_power_cut_that_loses_the_last_transactions_never_reuses_a_message_key(tmp_path: Path) -> None:
    outbox = await opened(tmp_path, row_readings=10)
    await committed_keys(outbox, readings("a", 0, 30))
    copy_database(tmp_path, tmp_path / "before")  # what the disk held when the power went
    sent = await committed_keys(outbox, readings("a", 30, 30))  # committed, sent and acknowledged by the cloud
    await outbox.close()
    remove_database(tmp_path)
    copy_database(tmp_path / "before", tmp_path)  # the WAL's tail is lost; the generation file is not

    again = await opened(tmp_path, row_readings=10)
    new = await committed_keys(again, readings("b", 0, 30))
    assert {row_id for _, row_id in new} & {row_id for _, row_id in sent}, "the ids themselves came back"
    assert not new & sent, "but (generation, id) never names two messages"
    assert again.generation > outbox.generation
    await again.close()


async def test_a_deleted_or_replaced_outbox_file_starts_a_new_generation(tmp_path: Path) -> None:
    outbox = await opened(tmp_path)
    sent = await committed_keys(outbox, readings("a", 0, 5))
    await outbox.close()
    remove_database(tmp_path)
    fresh = await opened(tmp_path)
    new = await committed_keys(fresh, readings("a", 5, 5))
    assert not new & sent and fresh.generation > outbox.generation
    await fresh.close()

    fresh.generation_path.unlink()  # the generation file lost too: the database still knows
    last = await opened(tmp_path)
    assert last.generation > fresh.generation
    await last.close()


async def test_a_damaged_outbox_file_is_moved_aside_counted_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "outbox.sqlite").write_bytes(b"this is not a database" * 100)
    outbox = await opened(tmp_path)
    (aside,) = moved_aside(tmp_path)
    assert aside.read_bytes().startswith(b"this is not a database")
    assert outbox.corrupt == 1 and outbox.stats().corrupt == 1
    assert "is damaged" in caplog.text
    outbox.put(readings("a", 0, 10))
    await outbox.flush()
    assert stored(outbox) == [("a", i) for i in range(10)]
    await outbox.close()


async def test_readings_put_before_the_database_opens_wait_and_are_committed(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    outbox = Outbox(OutboxConfig(), blocker)
    outbox.put(readings("a", 0, 10))
    with pytest.raises(OSError):
        await outbox.open()
    assert outbox.open_error is not None and outbox.stats().open_failing == 1
    outbox.put(readings("a", 10, 10))
    assert outbox.balance() == (0, 0) and outbox.pending == 20
    blocker.unlink()
    await outbox.open()
    await outbox.flush()
    assert stored(outbox) == [("a", i) for i in range(20)]
    assert outbox.balance() == (0, 0) and outbox.open_error is None
    await outbox.close()


DAY = 86400.0


async def test_a_wall_clock_step_after_boot_does_not_expire_fresh_readings(tmp_path: Path) -> None:
    wall, running = [0.0], [500.0]  # a board without a real-time clock boots in 1970
    outbox = await opened(tmp_path, clock=lambda: wall[0], monotonic=lambda: running[0], ttl="7d")
    outbox.put(readings("a", 0, 10))
    await outbox.flush()
    wall[0] += 30 * DAY  # time sync: the wall clock steps a month forward
    running[0] += 10
    outbox.put(readings("a", 10, 10))
    await outbox.flush()
    assert outbox.expired == 0 and [v for _, v in stored(outbox)] == list(range(20))
    assert outbox.stats().oldest_age == 10

    running[0] += 7 * DAY - 5  # the first readings have now waited longer than ttl; the second not
    outbox.put(readings("a", 20, 10))
    await outbox.flush()
    assert outbox.expired == 10 and [v for _, v in stored(outbox)] == list(range(10, 30))
    assert outbox.balance() == (0, 0)
    await outbox.close()


async def test_the_age_of_stored_readings_survives_a_restart(tmp_path: Path) -> None:
    running = [100.0]
    outbox = await opened(tmp_path, monotonic=lambda: running[0], ttl="7d")
    outbox.put(readings("a", 0, 10))
    await outbox.flush()
    running[0] += 2 * DAY  # no commit in between: close keeps this time too
    await outbox.close()

    rebooted = [3.0]  # the monotonic clock starts again near zero after a reboot
    again = await opened(tmp_path, monotonic=lambda: rebooted[0], ttl="7d")
    assert again.stats().oldest_age == 2 * DAY
    rebooted[0] += 5 * DAY + 1
    again.put(readings("a", 10, 10))
    await again.flush()
    assert again.expired == 10 and [v for _, v in stored(again)] == list(range(10, 20))
    await again.close()


async def test_rows_of_an_older_release_are_kept_and_age_from_the_upgrade(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:  # the layout before generations and the age clock
        db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL, subject TEXT NOT NULL,"
            " created REAL NOT NULL, count INTEGER NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL)"
        )
        payload = json.dumps([["v", i, 1.0, 0] for i in range(5)]).encode()
        db.execute("INSERT INTO outbox (kind, subject, created, count, size, payload) VALUES (0, 'a', 0.0, 5, 40, ?)", (payload,))
        db.execute("INSERT INTO counters VALUES ('accepted', 5)")
    db.close()
    running = [50.0]
    outbox = await opened(tmp_path, monotonic=lambda: running[0], ttl="7d")
    assert outbox.depth == 5 and outbox.stats().oldest_age == 0
    running[0] += DAY
    outbox.put(readings("a", 5, 5))
    await outbox.flush()
    assert outbox.expired == 0 and [v for _, v in stored(outbox)] == list(range(10)), "stamped in 1970, yet kept"
    running[0] += 6 * DAY + 1
    outbox.put(readings("a", 10, 5))
    await outbox.flush()
    assert outbox.expired == 5 and [v for _, v in stored(outbox)] == list(range(5, 15))
    assert outbox.balance() == (0, 0)
    await outbox.close()


async def test_readings_stored_before_the_clock_is_synchronised_stay_marked(tmp_path: Path) -> None:
    outbox = await opened(tmp_path, row_readings=100)
    outbox.clock_synced = False
    outbox.put(readings("a", 0, 10))
    outbox.put(readings("b", 0, 10))
    outbox.clock_synced = True  # synchronised before the commit: the first batches keep their mark
    outbox.put(readings("a", 10, 10))
    await outbox.flush()
    rows = await outbox.fetch(0, outbox.last_id, 1000)
    assert [(r.subject, r.count, r.unsynced) for r in rows] == [("a", 10, True), ("b", 10, True), ("a", 10, False)]
    assert [json.loads(r.payload)[0][1] for r in rows] == [0, 0, 10], "a device's readings stay in order"
    await outbox.close()

    outbox = await opened(tmp_path)  # the mark is stored with the row
    assert [r.unsynced for r in await outbox.fetch(0, outbox.last_id, 1000)] == [True, True, False]
    await outbox.dead_letter(rows[0], "refused")
    assert await outbox.requeue() == 10
    (requeued,) = [r for r in await outbox.fetch(rows[-1].id, outbox.last_id, 1000)]
    assert (requeued.subject, requeued.unsynced) == ("a", True)
    assert outbox.balance() == (0, 0)
    await outbox.close()


# -- several uplinks: one row per reading, one lane per uplink ----------------------


async def with_lanes(tmp_path: Path, names: list[str], monotonic: object = None, **config: object) -> Outbox:
    clocks = {"monotonic": monotonic} if monotonic else {}
    outbox = Outbox(OutboxConfig.model_validate(config), tmp_path, **clocks)
    for name in names:
        outbox.lane(name)
    await outbox.open()
    return outbox


def balanced(outbox: Outbox) -> bool:
    return outbox.balance() == (0, 0) and all(lane.balance() == 0 for lane in outbox.lanes)


def bits(outbox: Outbox) -> list[int]:
    with sqlite3.connect(outbox.path) as db:
        return [waiting for (waiting,) in db.execute("SELECT waiting FROM outbox ORDER BY id")]


async def test_a_reading_is_stored_once_and_its_row_leaves_when_every_uplink_has_it(tmp_path: Path) -> None:
    outbox = await with_lanes(tmp_path, ["a", "b"], row_readings=10)
    a, b = outbox.lane("a"), outbox.lane("b")
    outbox.put(readings("d", 0, 100))
    await outbox.flush()
    assert (outbox.rows, outbox.depth, a.depth, b.depth, a.rows, b.rows) == (10, 100, 100, 100, 10, 10)
    rows = await a.fetch(0, a.last_id, 1000)
    assert [r.id for r in rows] == [r.id for r in await b.fetch(0, b.last_id, 1000)]

    a.ack(r.id for r in rows)
    await outbox.flush()
    assert (outbox.rows, outbox.depth, a.depth, b.depth, a.acked) == (10, 100, 0, 100, 100), "b still needs them all"
    assert await a.fetch(0, a.last_id, 1000) == []
    assert len(await b.fetch(0, b.last_id, 1000)) == 10
    b.ack(r.id for r in rows[:5])
    await outbox.flush()
    assert (outbox.rows, outbox.depth, b.depth, b.acked) == (5, 50, 50, 50), "deleted in the ack that made them done"
    assert balanced(outbox)
    await outbox.close()

    again = await with_lanes(tmp_path, ["a", "b"], row_readings=10)
    a, b = again.lane("a"), again.lane("b")
    assert (a.acked, a.depth, b.acked, b.depth, again.accepted, a.accepted) == (100, 0, 50, 50, 100, 100)
    assert [r.id for r in await b.fetch(0, b.last_id, 1000)] == [r.id for r in rows[5:]]
    assert await a.fetch(0, a.last_id, 1000) == [], "each uplink keeps its bit across a restart"
    assert balanced(again)
    await again.close()


async def test_an_uplink_added_later_gets_the_rows_from_then_on_and_one_removed_leaves_none_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = await with_lanes(tmp_path, ["a"], row_readings=10)
    outbox.put(readings("d", 0, 30))
    await outbox.flush()
    await outbox.close()

    outbox = await with_lanes(tmp_path, ["a", "c"], row_readings=10)
    a, c = outbox.lane("a"), outbox.lane("c")
    assert (a.depth, c.depth, c.rows, c.accepted) == (30, 0, 0, 0)
    outbox.put(readings("d", 30, 10))
    await outbox.flush()
    assert (a.depth, c.depth, outbox.depth) == (40, 10, 40)
    assert [json.loads(r.payload)[0][1] for r in await c.fetch(0, c.last_id, 1000)] == [30]
    assert balanced(outbox)
    await outbox.close()

    outbox = await with_lanes(tmp_path, ["c"], row_readings=10)
    c = outbox.lane("c")
    assert (outbox.depth, outbox.rows, c.depth, outbox.abandoned) == (10, 1, 10, 30), "what only a needed went with it"
    assert "uplink a is no longer configured" in caplog.text
    assert bits(outbox) == [c.bit]
    assert balanced(outbox)
    await outbox.close()
    outbox = await with_lanes(tmp_path, ["c", "e"], row_readings=10)
    assert outbox.lane("e").bit == 1, "a removed uplink's bit is free again"
    assert outbox.abandoned == 30 and outbox.stats().abandoned == 30
    await outbox.close()


async def test_drops_expiry_and_dead_letters_are_counted_for_each_uplink_that_needed_the_row(tmp_path: Path) -> None:
    now = [0.0]
    outbox = await with_lanes(tmp_path, ["a", "b"], monotonic=lambda: now[0], row_readings=10, ttl="1h")
    a, b = outbox.lane("a"), outbox.lane("b")
    outbox.put(readings("d", 0, 30))
    await outbox.flush()
    first, second, third = await outbox.fetch(0, outbox.last_id, 1000)
    a.ack([first.id])
    assert await b.dead_letter(second, "too large")
    assert not await b.dead_letter(second, "too large"), "already gone for b"
    await outbox.flush()
    assert (b.dead_letters, b.dead_lettered, a.dead_letters, b.depth, a.depth, outbox.depth) == (10, 10, 0, 20, 20, 30)
    letters = await outbox.list_dead_letters()
    assert [(d.id, d.uplink) for d in letters] == [(second.id, "b")]
    assert balanced(outbox)

    now[0] = 3000.0  # the requeued row ages from here
    got: dict[str, list[int]] = {"a": [], "b": []}
    a.subscribe(lambda rows: got["a"].extend(r.id for r in rows))
    b.subscribe(lambda rows: got["b"].extend(r.id for r in rows))
    assert await b.requeue() == 10
    assert got == {"a": [], "b": [outbox.last_id]}, "a requeued row is for the uplink that was refused it"
    assert [r.id for r in await a.fetch(third.id, outbox.last_id, 1000)] == []
    assert (b.requeued, b.dead_letters, b.depth) == (10, 0, 30)

    now[0] = 4000.0
    outbox.put(readings("d", 30, 10))
    await outbox.flush()
    # a needed second and third (20), b first, third and the requeued row (30): all older than the ttl but the requeued.
    assert (a.expired, b.expired) == (20, 20)
    assert (a.depth, b.depth, outbox.depth) == (10, 20, 20)
    assert balanced(outbox)

    outbox.put_event("command_result", {"id": "x"}, uplink="a")
    await outbox.flush()
    assert (a.depth, b.depth) == (11, 20), "an answer goes to the uplink the command came from"
    assert balanced(outbox)
    await outbox.close()


async def test_drop_oldest_counts_the_dropped_readings_of_each_uplink_that_still_needed_them(tmp_path: Path) -> None:
    outbox = await with_lanes(tmp_path, ["a", "b"], max_bytes=20_000, row_readings=20)
    a, b = outbox.lane("a"), outbox.lane("b")
    for start in range(0, 5000, 250):
        outbox.put(readings("d", start, 250))
        await outbox.flush()
        a.ack(r.id for r in await a.fetch(0, a.last_id, 10_000))  # a keeps up; b is down
    await outbox.flush()
    assert b.dropped_full > 0 and a.dropped_full < b.dropped_full
    assert b.dropped_full + b.depth == 5000 == a.accepted == b.accepted
    assert outbox.bytes <= 20_000
    assert balanced(outbox)
    await outbox.close()


async def test_an_outbox_opened_without_naming_uplinks_keeps_those_of_its_file(tmp_path: Path) -> None:
    outbox = await with_lanes(tmp_path, ["a", "b"])
    outbox.put(readings("d", 0, 10))
    await outbox.flush()
    await outbox.close()
    tool = await opened(tmp_path)
    assert [(lane.name, lane.depth) for lane in tool.lanes] == [("a", 10), ("b", 10)]
    await tool.close()
    renamed = await with_lanes(tmp_path, ["x"])  # none of its uplinks is configured: the first takes over
    assert [(lane.name, lane.depth) for lane in renamed.lanes] == [("x", 10)] and renamed.abandoned == 0
    assert balanced(renamed)
    await renamed.close()


SINGLE_UPLINK_FILE = Path(__file__).parent / "data" / "outbox-single-uplink.sqlite"
# Written by edged before an outbox had several uplinks: two devices' readings in rows of 50, a device
# status event, the first four rows acknowledged, the fifth dead-lettered: 1001 readings accepted,
# 200 acked, 50 in the dead letters, 751 waiting in 16 rows.


async def test_a_file_of_the_single_uplink_outbox_becomes_its_first_uplinks_with_every_count(tmp_path: Path) -> None:
    shutil.copy(SINGLE_UPLINK_FILE, tmp_path / "outbox.sqlite")
    outbox = await with_lanes(tmp_path, ["mqtt", "coap"])
    first, second = outbox.lane("mqtt"), outbox.lane("coap")
    assert (outbox.accepted, outbox.depth, outbox.rows) == (1001, 751, 16)
    assert (first.accepted, first.acked, first.depth, first.rows, first.dead_letters) == (1001, 200, 751, 16, 50)
    assert (second.accepted, second.depth, second.dead_letters) == (0, 0, 0), "the new uplink gets what comes from now on"
    assert [d.uplink for d in await outbox.list_dead_letters()] == ["mqtt"]
    assert len(await first.fetch(0, outbox.last_id, 10_000)) == 16 and await second.fetch(0, outbox.last_id, 10_000) == []
    assert await outbox.requeue() == 50 and first.depth == 801 and second.depth == 0
    assert balanced(outbox) and outbox.generation == 2
    await outbox.close()


def lane_figures_from_file(outbox: Outbox) -> dict[str, tuple[int, int, int]]:
    """(depth, rows, dead letters) of each lane, counted from the file itself."""
    with sqlite3.connect(outbox.path) as db:
        return {
            lane.name: (
                int(db.execute("SELECT total(count) FROM outbox WHERE waiting & ?", (lane.bit,)).fetchone()[0]),
                db.execute("SELECT count(*) FROM outbox WHERE waiting & ?", (lane.bit,)).fetchone()[0],
                int(db.execute("SELECT total(count) FROM dead_letter WHERE uplink = ?", (lane.name,)).fetchone()[0]),
            )
            for lane in outbox.lanes
        }


@pytest.mark.parametrize("seed", range(6))
async def test_every_reading_stays_accounted_for_per_uplink_whatever_happens(tmp_path: Path, seed: int) -> None:
    import random

    chance = random.Random(seed)
    now = [0.0]
    config = {"max_bytes": 8_000, "row_readings": 20, "ttl": "1h", "dead_letter_rows": 5}
    names = ["a", "b", "c"]
    outbox = await with_lanes(tmp_path, names, monotonic=lambda: now[0], **config)
    value = 0
    requeued = 0  # requeued rows come back whatever the bounds; the next commit applies them
    for step in range(120):
        action = chance.random()
        lane = chance.choice(outbox.lanes)
        if action < 0.35:
            outbox.put(readings(chance.choice(["d1", "d2"]), value, chance.randint(1, 60)))
            value += 60
            requeued = 0
        elif action < 0.40:
            outbox.put_event("device_status", {"device": "d1"}, uplink=chance.choice([None, lane.name]))
        elif action < 0.60:
            rows = await lane.fetch(0, outbox.last_id, 10_000)
            lane.ack(r.id for r in rows if chance.random() < 0.6)
        elif action < 0.68:
            rows = await lane.fetch(0, outbox.last_id, 10_000)
            if rows:
                await lane.dead_letter(chance.choice(rows), "refused")
        elif action < 0.73:
            requeued = await (lane.requeue() if chance.random() < 0.5 else lane.discard())
        elif action < 0.78:
            now[0] += chance.choice([60.0, 1800.0, 4000.0])
        elif action < 0.82:  # a restart, sometimes with an uplink removed or one added
            await outbox.close()
            if chance.random() < 0.3 and len(names) > 1:
                names.remove(chance.choice(names))
            elif chance.random() < 0.3:
                names.append(f"n{step}")
            outbox = await with_lanes(tmp_path, names, monotonic=lambda: now[0], **config)
        await outbox.flush()
        assert balanced(outbox), (step, outbox.balance(), [(ln.name, ln.balance()) for ln in outbox.lanes])
        assert lane_figures_from_file(outbox) == {ln.name: (ln.depth, ln.rows, ln.dead_letters) for ln in outbox.lanes}
        assert outbox.depth == sum(r.count for r in await outbox.fetch(0, outbox.last_id, 10**9))
        assert outbox.bytes <= 8_000 or requeued
        assert 0 not in bits(outbox), "a row no uplink needs is gone"
    figures = {ln.name: [getattr(ln, c) for c in ("accepted", "acked", "dropped_full", "expired", "dead_lettered")]
               for ln in outbox.lanes}  # fmt: skip
    await outbox.close()
    again = await with_lanes(tmp_path, names, monotonic=lambda: now[0], **config)
    assert {ln.name: [getattr(ln, c) for c in ("accepted", "acked", "dropped_full", "expired", "dead_lettered")]
            for ln in again.lanes} == figures, "every lane's counters are stored with the rows"  # fmt: skip
    assert balanced(again)
    await again.close()
