"""How fast readings are accepted (committed) into the outbox, and what they cost on disk.

A producer hands the outbox batches of 100 readings from 50 devices, yielding
to the loop between groups of batches as adapters do, for a bounded number of
readings and time; the rate counts only readings committed (accepted).

    .venv/bin/python bench/outbox.py [--readings 2000000] [--seconds 20] [--synchronous normal]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from edged.model import Reading
from edged.outbox import Outbox, OutboxConfig

DEVICES = 50
BATCH = 100


async def main(readings: int, seconds: float, synchronous: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(OutboxConfig(synchronous=synchronous, max_bytes=8 * 2**30), Path(tmp))
        await outbox.open()
        batches = [
            [Reading(f"bench/dev{d}", f"p{i % 10}", float(i), 1_767_225_600.0 + i / 1000) for i in range(BATCH)]
            for d in range(DEVICES)
        ]
        start = time.perf_counter()
        deadline = start + seconds
        handed = 0
        while handed < readings and time.perf_counter() < deadline:
            for batch in batches:
                outbox.put(batch)
            handed += DEVICES * BATCH
            # Adapters hand over a poll and go back to the loop; back off while the writer is behind.
            await asyncio.sleep(0 if handed - outbox.accepted < 200_000 else 0.001)
        await outbox.flush()
        elapsed = time.perf_counter() - start
        files = [outbox.path, outbox.path.with_name(outbox.path.name + "-wal")]
        size = sum(f.stat().st_size for f in files if f.exists())
        print(f"synchronous: {synchronous}")
        print(f"readings_accepted: {outbox.accepted}")
        print(f"elapsed: {elapsed:.2f} s")
        print(f"rows: {outbox.rows}")
        print(f"outbox_bytes_per_reading: {size / outbox.accepted:.1f} bytes")
        print(f"outbox_accept_per_s: {outbox.accepted / elapsed:.0f} readings/s")
        await outbox.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--synchronous", choices=["off", "normal", "full"], default="normal")
    args = parser.parse_args()
    asyncio.run(main(args.readings, args.seconds, args.synchronous))
