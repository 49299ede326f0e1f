"""Zigbee: pairing time and attribute reports per second into the Hub.

Runs the Zigbee adapter on the simulated radio (adapters/zigbee/simulator.py),
so everything above the radio is zigpy's real code: the ZDO interview, ZCL
parsing and request matching, the SQLite device database, and edged's
cluster-to-point conversion and batching. A real radio's serial link (115200
baud carries roughly 250 ZCL frames/s) and the air (about 100 frames/s per
channel in practice) are far slower than this, so the figures say how much
of one core the gateway spends per device and per report, not what a real
network delivers.

Phases (each prints its figures):
  pair     N smart plugs join at once: interview, bind, reporting
           configuration and first read of every plug; wall time per plug.
  reports  each round every plug sends one Report Attributes frame with three
           attributes (power, voltage, current); the round ends when the Hub
           has all readings. Reports/s, readings/s, CPU s per 1000 reports,
           and Hub batches per report (1.0 = one batch per frame).
  rss      peak resident memory of the process.
The headline (last line) is reports per second.

Usage: python bench/zigbee_reports.py [--devices 50] [--seconds 5] [--max-rounds 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement

from edged.adapters.zigbee.adapter import ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.hub import Hub

EM = ElectricalMeasurement.cluster_id
ATTRIBUTES = ["active_power", "rms_voltage", "rms_current"]


async def run(devices: int, seconds: float, max_rounds: int) -> None:
    hub = Hub()
    changed = asyncio.Event()
    stats = {"readings": 0, "batches": 0}

    def on_batch(batch) -> None:
        stats["readings"] += len(batch)
        stats["batches"] += 1
        changed.set()

    hub.subscribe(on_batch)
    hub.subscribe_events(lambda event: changed.set())

    async def until(predicate, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                changed.clear()
                await changed.wait()

    config = ZigbeeConfig.model_validate({
        "type": "zigbee", "radio": "simulated",
        "simulated": {"devices": [{"kind": "plug"}] * devices, "report_interval": 0},
    })
    with tempfile.TemporaryDirectory() as state:
        adapter = ZigbeeAdapter(config, hub, Path(state))
        task = asyncio.create_task(adapter.run())
        try:
            async with asyncio.timeout(30):
                await adapter.ready.wait()
            app = adapter.app
            ids = [adapter.device_id(str(node.ieee)) for node in app.nodes]

            started = time.perf_counter()
            await adapter.permit_join(60)
            await until(lambda: all(hub.value(i, "demand") is not None for i in ids), timeout=120)
            pair_s = time.perf_counter() - started
            print(f"pair: {devices} plugs in {pair_s:.2f} s")
            print(f"pair_per_device: {pair_s / devices * 1000:.1f} ms")

            readings_before, batches_before = stats["readings"], stats["batches"]
            cpu_before = time.process_time()
            started = time.perf_counter()
            rounds = 0
            deadline = started + seconds
            while rounds < max_rounds and time.perf_counter() < deadline:
                rounds += 1
                target = stats["readings"] + devices * len(ATTRIBUTES)
                for node in app.nodes:
                    node.values[(EM, "active_power")] = rounds % 30000
                    node.report(EM, ATTRIBUTES)
                await until(lambda target=target: stats["readings"] >= target, timeout=30)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            reports = rounds * devices
            readings = stats["readings"] - readings_before
            batches = stats["batches"] - batches_before
            print(f"reports: {reports} in {elapsed:.2f} s ({rounds} rounds of {devices})")
            print(f"readings_per_s: {readings / elapsed:.0f}")
            print(f"cpu_per_1000_reports: {cpu / reports * 1000:.3f} s")
            print(f"batches_per_report: {batches / reports:.2f}")
            print(f"rss_peak: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MiB")
            print(f"zigbee_reports: {reports / elapsed:.0f} reports/s")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-rounds", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(run(args.devices, args.seconds, args.max_rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
