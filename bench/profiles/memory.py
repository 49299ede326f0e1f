"""Where edged's memory per configured point goes: tracemalloc snapshots of a
whole daemon (the peer workload's configuration, polling, outbox, MQTT
uplink) running in one process per size, compared between two sizes.

For each size (D units x 100 uint16 points on one connection, default
D = 10 and 200: 1,000 and 20,000 configured points) a child process starts
tracemalloc, loads the configuration, runs the daemon against the peer
workload's responder and a mosquitto for ``--seconds`` and takes a snapshot.
The parent prints, per configured point (the difference between the sizes
divided by the difference in points): the top allocation sites by line, and
the same bytes grouped by the innermost edged or adapters line that led to
them (what in our code holds the memory, whatever library allocated it).

    python bench/profiles/memory.py [--units 10,200] [--seconds 10] [--top 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from bench.peer_workload import REGISTERS, Peer, config_text, modbus_adapter  # noqa: E402
from tests.daemon_process import free_port  # noqa: E402
from tests.uplink.peers import Broker  # noqa: E402

OURS = (str(ROOT / "edged"), str(ROOT / "adapters"))


async def one_size(config_path: Path, seconds: float, out: Path) -> None:
    """Run the daemon of ``config_path`` for ``seconds`` under tracemalloc, then dump a snapshot to ``out``."""
    tracemalloc.start(25)
    from edged.config import load_config
    from edged.daemon import Daemon

    daemon = Daemon(load_config(config_path), config_path)
    task = asyncio.create_task(daemon.run())
    async with asyncio.timeout(120):
        await daemon.ready.wait()
    await asyncio.sleep(seconds)
    tracemalloc.take_snapshot().dump(str(out))
    print(f"traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB, "
          f"peak RSS (with tracemalloc's own) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB",
          flush=True)  # fmt: skip
    daemon.stop()
    async with asyncio.timeout(30):
        await task


def ours(traceback: tracemalloc.Traceback) -> str:
    """The innermost edged/adapters line of an allocation's traceback."""
    for frame in reversed(traceback):  # a Traceback lists the oldest frame first
        if frame.filename.startswith(OURS):
            return f"{Path(frame.filename).relative_to(ROOT)}:{frame.lineno}"
    return "(no edged frame)"


def by_our_line(snapshot: tracemalloc.Snapshot) -> collections.Counter[str]:
    sizes: collections.Counter[str] = collections.Counter()
    for trace in snapshot.traces:
        sizes[ours(trace.traceback)] += trace.size
    return sizes


def report(small: tracemalloc.Snapshot, large: tracemalloc.Snapshot, points: int, top: int) -> None:
    total = sum(s.size for s in large.statistics("filename")) - sum(s.size for s in small.statistics("filename"))
    print(f"traced bytes per configured point: {total / points:.0f} B")
    print(f"\ntop {top} allocation sites by line, bytes per configured point:")
    for stat in large.compare_to(small, "lineno")[:top]:
        frame = stat.traceback[0]
        print(f"  {stat.size_diff / points:8.0f} B  {stat.count_diff / points:6.2f} blocks  {frame.filename}:{frame.lineno}")
    print(f"\ntop {top} edged/adapters lines the memory was allocated under, bytes per configured point:")
    grown = by_our_line(large)
    grown.subtract(by_our_line(small))
    for where, size in grown.most_common(top):
        print(f"  {size / points:8.0f} B  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="10,200", help="two sizes, in units of 100 points")
    parser.add_argument("--seconds", type=float, default=10.0, help="polling before the snapshot")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # child: the configuration to run
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        asyncio.run(one_size(args.one, args.seconds, args.out))
        return
    sizes = [int(u) for u in args.units.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="edged-memory-"))
    (folder / "broker").mkdir()
    broker = Broker(folder / "broker")
    broker.start()
    snapshots = []
    try:
        for units in sizes:
            with Peer(units) as peer:
                config = folder / f"config-{units}.yaml"
                config.write_text(config_text(folder / f"state-{units}", free_port(), broker.port,
                                              [modbus_adapter(peer.port, 1, units)], 256))  # fmt: skip
                out = folder / f"snapshot-{units}"
                print(f"{units * REGISTERS:,} points: ", end="", flush=True)
                subprocess.run([sys.executable, __file__, "--one", str(config), "--out", str(out),
                                "--seconds", str(args.seconds)], check=True, timeout=300)  # fmt: skip
                snapshots.append(tracemalloc.Snapshot.load(str(out)))
    finally:
        broker.stop()
    with contextlib.suppress(IndexError):
        report(snapshots[0], snapshots[1], (sizes[1] - sizes[0]) * REGISTERS, args.top)


if __name__ == "__main__":
    main()
