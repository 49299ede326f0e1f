"""The clock watch: whether readings are stamped by a synchronised clock."""

from __future__ import annotations

import asyncio
import contextlib

from edged.clock import ClockWatch, kernel_clock_synced


async def test_the_watch_follows_the_kernel_and_reports_each_change_once() -> None:
    answers = iter([False, False, False, True, True, True])
    changes: list[bool] = []
    seen_sync = asyncio.Event()

    def changed(synced: bool) -> None:
        changes.append(synced)
        if synced:
            seen_sync.set()

    watch = ClockWatch(False, changed, probe=lambda: next(answers, True), every=0.001)
    assert watch.synced is False and changes == [False]
    task = asyncio.create_task(watch.run())
    async with asyncio.timeout(5):
        await seen_sync.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert changes == [False, True] and watch.synced is True


async def test_a_trusted_clock_is_never_asked() -> None:
    def probe() -> bool:
        raise AssertionError("the kernel was asked")

    changes: list[bool] = []
    watch = ClockWatch(True, changes.append, probe=probe, every=0.001)
    await watch.run()  # returns at once: nothing to watch
    assert watch.synced is True and changes == [True]


def test_a_kernel_that_cannot_tell_is_not_second_guessed() -> None:
    watch = ClockWatch(False, lambda synced: None, probe=lambda: None)
    assert watch.synced is True
    assert kernel_clock_synced() in (True, False)  # Linux answers adjtimex


def test_a_senml_pack_of_unsynchronised_readings_says_so_in_its_first_record() -> None:
    import cbor2

    from edged.uplink import senml

    payload = b'[["t", 21.5, 100.0, 0], ["t", 21.6, 101.0, 0]]'
    marked = cbor2.loads(senml.encode_row("gw", "sim/a", 7, payload, 2, unsynced=True))
    plain = cbor2.loads(senml.encode_row("gw", "sim/a", 7, payload, 2))
    assert marked[0]["clock"] == "unsynced" and "clock" not in marked[1]
    assert all("clock" not in record for record in plain)
