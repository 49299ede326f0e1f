"""The sender's lanes with a link that stalls: live rows that pile up go to
the backlog lane instead of memory, and every row still goes out once, in
order within its lane."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edged.model import Reading
from edged.outbox import Outbox, OutboxConfig, Row
from edged.uplink import sender as sender_module
from edged.uplink.sender import Sender


async def test_a_stalled_link_moves_the_live_pile_to_the_backlog_and_delivers_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_module, "LIVE_LIMIT", 500)
    outbox = Outbox(OutboxConfig(row_readings=10), tmp_path)
    await outbox.open()
    gate = asyncio.Event()
    sent: list[tuple[int, bool]] = []
    delivered = asyncio.Event()

    async def send(row: Row) -> None:
        await gate.wait()
        sent.append((row.id, row.id in backlog_ids))
        if len(sent) == 300:
            delivered.set()

    backlog_ids: set[int] = set()
    sender = Sender(outbox, send, inflight=4, backfill_rate=0)
    original_fetch = outbox.fetch

    async def fetch(after: int, upto: int, limit: int) -> list[Row]:
        rows = await original_fetch(after, upto, limit)
        backlog_ids.update(r.id for r in rows)
        return rows

    outbox.fetch = fetch  # type: ignore[method-assign]
    task = asyncio.create_task(sender.run())
    for start in range(0, 3000, 100):
        outbox.put([Reading("d", "n", i, 0.0) for i in range(start, start + 100)])
        await outbox.flush()
    gate.set()
    await asyncio.wait_for(delivered.wait(), 10)
    committed = asyncio.Event()
    outbox.subscribe(lambda rows: committed.set())
    async with asyncio.timeout(10):
        while outbox.acked < 3000:  # acks are deleted in the outbox's next transactions
            committed.clear()
            await committed.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    ids = [i for i, _ in sent]
    assert sorted(ids) == list(range(1, 301)), "every row once"
    assert sender.sent_backlog > 0, "the pile went to the backlog lane"
    assert sender.sent_live + sender.sent_backlog == 3000
    for lane in (True, False):
        in_lane = [i for i, backlog in sent if backlog is lane]
        assert in_lane == sorted(in_lane)
    assert outbox.depth == 0
    await outbox.close()
