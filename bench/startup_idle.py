"""Start-to-ready time, idle CPU and RSS of ``edged run -c config.example.yaml``.

Start-to-ready is measured from process spawn to the systemd ``READY=1``
notification (the status API answering), median of ``--runs`` starts. Idle
CPU is the daemon's user+system CPU time over ``--idle`` seconds after a
short settling period, as a percentage of one core.

    python bench/startup_idle.py [--runs 5] [--idle 30]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon_process import daemon, free_port  # noqa: E402


def example_config(folder: Path, port: int) -> Path:
    text = (ROOT / "config.example.yaml").read_text().replace("port: 8080", f"port: {port}")
    path = folder / "config.yaml"
    path.write_text(text)
    return path


async def one_start(folder: Path) -> float:
    port = free_port()
    async with daemon(example_config(folder, port), port) as proc:
        ready = await proc.wait_notification("READY=1", timeout=30)
        proc.signal(signal.SIGTERM)
        await proc.wait_exit()
    return ready


async def idle(folder: Path, seconds: float) -> tuple[float, float]:
    port = free_port()
    async with daemon(example_config(folder, port), port) as proc:
        await proc.wait_notification("READY=1", timeout=30)
        ps = psutil.Process(proc.proc.pid)
        await asyncio.sleep(3)  # let start-up work settle before measuring idle
        before = ps.cpu_times()
        await asyncio.sleep(seconds)
        after = ps.cpu_times()
        rss = ps.memory_info().rss / 2**20
        proc.signal(signal.SIGTERM)
        await proc.wait_exit()
    cpu = (after.user - before.user) + (after.system - before.system)
    return 100 * cpu / seconds, rss


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="edged-bench-"))
    try:
        starts = [await one_start(folder) for _ in range(args.runs)]
        cpu, rss = await idle(folder, args.idle)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"start_to_ready_runs: {' '.join(f'{s:.3f}' for s in starts)} s")
    print(f"idle_cpu: {cpu:.2f} % of one core over {args.idle:g} s")
    print(f"rss: {rss:.1f} MiB")
    print(f"start_to_ready_median: {statistics.median(starts):.3f} s")


if __name__ == "__main__":
    asyncio.run(main())
