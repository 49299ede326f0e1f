"""Fault tests with real processes: a producer gateway killed with SIGKILL
mid-stream, again and again, and the broker stopped for a while and
restarted. Afterwards every accepted reading has reached the broker or was
counted as dropped by the full outbox, in order per device by message id."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.uplink.peers import Broker, Collector, collecting

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 60_000


class Producer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.last: dict[str, Any] = {"accepted": 0, "highest": {}}
        self.max_bytes_seen = 0

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> None:
        """Read the producer's commit reports until one satisfies ``predicate``."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while not predicate(self.last):
                line = await self.proc.stdout.readline()
                if not line:
                    raise AssertionError(f"producer exited with {await self.proc.wait()}")
                self.last = json.loads(line)
                self.max_bytes_seen = max(self.max_bytes_seen, self.last["bytes"])


@asynccontextmanager
async def producer(
    port: int, state: Path, run: int, *extra: str, max_bytes: int = MAX_BYTES
) -> AsyncIterator[Producer]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.uplink.producer", "--port", str(port), "--state", str(state),
        "--run", str(run), "--max-bytes", str(max_bytes), *extra,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield Producer(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def counters(state: Path) -> dict[str, int]:
    with sqlite3.connect(state / "outbox.sqlite") as db:
        return dict(db.execute("SELECT name, value FROM counters").fetchall())


def stored_bytes(state: Path) -> int:
    with sqlite3.connect(state / "outbox.sqlite") as db:
        return int(db.execute("SELECT total(size) FROM outbox").fetchone()[0])


async def kill(p: Producer) -> None:
    p.proc.send_signal(signal.SIGKILL)
    await p.proc.wait()


async def test_sigkill_and_broker_outage_lose_no_accepted_reading(tmp_path: Path, broker: Broker) -> None:
    state = tmp_path / "state"
    async with collecting(broker.port, "edged/gw/#") as cloud:
        # 1. Killed while streaming to a healthy broker.
        async with producer(broker.port, state, 0) as p:
            await p.until(lambda r: r["accepted"] >= 2000)
            await kill(p)
        await cloud.until(lambda: ("edged/gw/status", b"offline") in cloud.messages)  # the Last Will

        # 2. Broker stopped mid-stream; the outbox fills past its cap while offline; killed offline.
        async with producer(broker.port, state, 1) as p:
            await p.until(lambda r: r["accepted"] >= 1000)
            broker.stop()
            await p.until(lambda r: r["accepted"] >= 12_000)
            await kill(p)
        assert stored_bytes(state) <= MAX_BYTES
        assert counters(state)["dropped_full"] > 0, "the outage was long enough to fill the outbox"

        # 3. Started while the broker is still down, broker back mid-stream, killed while draining.
        async with producer(broker.port, state, 2) as p:
            await p.until(lambda r: r["accepted"] >= 2000)
            broker.start()
            await p.until(lambda r: r["accepted"] >= 4000)
            await kill(p)

        # 4. A last run that stops producing and drains, then stops cleanly on SIGTERM.
        async with producer(broker.port, state, 3, "--readings", "500") as p:
            await p.until(lambda r: r["highest"] and min(r["highest"].values()) >= 3_000_499 and r["depth"] == 0)
            p.proc.send_signal(signal.SIGTERM)
            assert await p.proc.wait() == 0
            assert p.max_bytes_seen <= MAX_BYTES

        totals = counters(state)
        assert stored_bytes(state) == 0
        received = received_readings(cloud)
        delivered = sum(len(v) for v in received.values())
        # A dropped row may have reached the broker before the cap pushed it out (its PUBACK lost
        # with the connection), so drops bound what is missing rather than equal it.
        missing = totals["accepted"] - delivered
        assert 0 <= missing <= totals["dropped_full"] + totals["expired"], totals
        for device, by_seq in received.items():
            in_order = [v for _, v in sorted(by_seq)]
            assert in_order == sorted(in_order), f"{device}: message ids follow the order readings arrived"
            assert {3_000_000 + n for n in range(500)} <= set(in_order), "the clean last run is complete"
        duplicates = sum(len(s) - len(set(s)) for s in cloud.seqs.values())
        print(f"accepted {totals['accepted']}, delivered {delivered}, dropped {totals['dropped_full']} (counted),"
              f" missing {missing}, {duplicates} duplicate messages")


def received_readings(cloud: Collector) -> dict[str, set[tuple[int, int]]]:
    """Per device, the distinct (seq, value) pairs that reached the broker."""
    return {device: {(seq, r[1]) for seq, r in readings} for device, readings in cloud.readings.items()}


async def test_with_room_to_spare_every_reading_reported_accepted_before_each_kill_arrives(
    tmp_path: Path, broker: Broker
) -> None:
    state = tmp_path / "state"
    room = 2**30
    accepted: list[dict[str, int]] = []  # per run: the highest value per device known to be committed
    async with collecting(broker.port, "edged/gw/data/#") as cloud:
        for run in range(3):
            async with producer(broker.port, state, run, max_bytes=room) as p:
                await p.until(lambda r: r["accepted"] >= 1500)
                if run == 1:
                    broker.stop()
                    await p.until(lambda r: r["accepted"] >= 4000)
                    await kill(p)
                    broker.start()
                else:
                    await kill(p)
                accepted.append(p.last["highest"])
        async with producer(broker.port, state, 3, "--readings", "200", max_bytes=room) as p:
            await p.until(lambda r: r["highest"] and min(r["highest"].values()) >= 3_000_199 and r["depth"] == 0)
            accepted.append(p.last["highest"])
        assert counters(state)["dropped_full"] == 0
        received = {device: {v for _, v in pairs} for device, pairs in received_readings(cloud).items()}
        for run, highest in enumerate(accepted):
            for device, top in highest.items():
                expected = set(range(run * 1_000_000, top + 1))
                assert expected <= received[device], f"run {run} {device}: {len(expected - received[device])} lost"
