"""Rules engine latency and throughput: 1,000 rules over 10,000 points.

100 devices with 100 points each plus a writable ``out`` point. Rule i
watches one of the points (every tenth one) for a threshold crossing, checks
a numeric condition on a neighbouring point and writes the value to its
device's ``out``. The writer stands in for an adapter and notes when each
command reaches it.

- latency: a poll batch of one device's 100 readings, one of which crosses a
  threshold, is handed to ``Hub.publish``; the time until the command
  reaches the writer (p50, p99, max over the samples);
- throughput: batches of 1,000 readings that wake rules but make none fire,
  through the Hub with and without the engine subscribed.

Prints one figure per line; the last is ``rules_latency_p99: N ms``.
Usage: python bench/rules_latency.py [--samples 2000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path

from pydantic import TypeAdapter

from edged.hub import Hub
from edged.model import Command, Device, Point, Reading, ValueType
from edged.rules.config import Rules
from edged.rules.engine import RulesEngine

DEVICES, POINTS, RULES = 100, 100, 1000
THRESHOLD = 100.0


def point_of(rule: int) -> tuple[str, int]:
    """Rule ``rule`` watches point ``10 * rule`` of the 10,000."""
    n = rule * (DEVICES * POINTS // RULES)
    return f"bench/d{n // POINTS}", n % POINTS


def make_rules() -> list:
    rules = []
    for i in range(RULES):
        device, index = point_of(i)
        rules.append({
            "id": f"r{i}",
            "mode": "parallel",
            "max": 100,
            "loop_guard": 0,
            "triggers": [{"type": "threshold", "point": f"{device}.p{index}", "above": THRESHOLD, "hysteresis": 1}],
            "conditions": [{"type": "numeric", "point": f"{device}.p{(index + 1) % POINTS}", "below": THRESHOLD}],
            "actions": [{"type": "write", "point": f"{device}.out", "expression": f"value('{device}.p{index}')"}],
        })  # fmt: skip
    return TypeAdapter(Rules).validate_python(rules)


def make_hub() -> Hub:
    hub = Hub()
    for d in range(DEVICES):
        points = {f"p{k}": Point(f"p{k}", ValueType.FLOAT) for k in range(POINTS)}
        points["out"] = Point("out", ValueType.FLOAT, writable=True)
        hub.add_device(Device(f"bench/d{d}", "bench", points=points, online=True))
    return hub


def quiet_batch(device: int, now: float, value: float = 10.0) -> list[Reading]:
    return [Reading(f"bench/d{device}", f"p{k}", value, now) for k in range(POINTS)]


class Timed:
    """One Hub with its writer; ``sample`` times one crossing to its command."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.arrived = asyncio.Event()
        self.stamp = 0.0
        self.wall: list[float] = []
        self.cpu: list[float] = []
        hub.attach_writer("bench", self._write)
        now = time.time()
        for d in range(DEVICES):
            hub.publish(quiet_batch(d, now))

    async def _write(self, command: Command) -> None:
        self.stamp = time.perf_counter()
        self.arrived.set()

    async def sample(self, k: int) -> None:
        device, index = point_of(k % RULES)
        d = int(device.rsplit("d", 1)[1])
        batch = quiet_batch(d, time.time())
        batch[index] = batch[index]._replace(value=THRESHOLD + 50.0)
        self.arrived.clear()
        cpu_start = time.thread_time()
        start = time.perf_counter()
        self.hub.publish(batch)
        await asyncio.wait_for(self.arrived.wait(), 5)
        self.cpu.append(time.thread_time() - cpu_start)
        self.wall.append(self.stamp - start)
        self.hub.publish(quiet_batch(d, time.time()))  # back below: re-arms, fires nothing
        await asyncio.sleep(0)


async def latency(samples: int, deadline: float) -> tuple[Timed, Timed, list[float]]:
    """Samples through the engine, interleaved one by one with the same path
    without it (a bare Hub listener starting a task that executes the
    command at once: what the machine costs), so both see the same load."""
    engine_path, floor_path = Timed(make_hub()), Timed(make_hub())
    pending: set[asyncio.Task[object]] = set()

    def listener(readings: object) -> None:
        for reading in readings:  # type: ignore[attr-defined]
            if reading.value > THRESHOLD:
                task = asyncio.get_running_loop().create_task(floor_path.hub.execute(Command(reading.device_id, "out", reading.value)))
                pending.add(task)
                task.add_done_callback(pending.discard)

    floor_path.hub.subscribe(listener)
    with tempfile.TemporaryDirectory() as state:
        engine = RulesEngine(make_rules(), engine_path.hub, Path(state), "UTC")
        task = asyncio.create_task(engine.run())
        await engine.started.wait()
        gc.collect()
        for k in range(samples):
            if time.monotonic() > deadline:
                break
            await engine_path.sample(k)
            await floor_path.sample(k)
        engine_view = list(engine.latencies)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return engine_path, floor_path, engine_view


async def throughput(with_engine: bool, seconds: float, max_batches: int) -> float:
    hub = make_hub()
    now = time.time()
    batches = [[r for d in range(k * 10, k * 10 + 10) for r in quiet_batch(d, now, 10.0 + k)] for k in range(10)]
    with tempfile.TemporaryDirectory() as state:
        task = None
        if with_engine:
            engine = RulesEngine(make_rules(), hub, Path(state), "UTC")
            task = asyncio.create_task(engine.run())
            await engine.started.wait()
        count = 0
        start = time.perf_counter()
        end = start + seconds
        while count < max_batches and time.perf_counter() < end:
            hub.publish(batches[count % len(batches)])
            count += 1
            if count % 10 == 0:
                await asyncio.sleep(0)
        elapsed = time.perf_counter() - start
        if task is not None:
            assert engine.firings_total == 0, "no rule should fire in the throughput run"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return count * len(batches[0]) / elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0, help="bound on each part")
    args = parser.parse_args()

    engine_path, floor_path, engine_view = await latency(args.samples, time.monotonic() + args.seconds)
    measured, cpu, floor, floor_cpu = engine_path.wall, engine_path.cpu, floor_path.wall, floor_path.cpu
    base = await throughput(False, min(args.seconds, 5.0), 20_000)
    with_rules = await throughput(True, min(args.seconds, 5.0), 20_000)
    ms = 1000.0
    print(f"rules: {RULES}, points: {DEVICES * POINTS}, samples: {len(measured)}")
    print(f"rules_latency_p50: {statistics.median(measured) * ms:.3f} ms")
    print(f"rules_latency_max: {max(measured) * ms:.3f} ms")
    print(f"rules_latency_cpu_p99: {percentile(cpu, 99) * ms:.3f} ms  (CPU time of this thread per sample: the engine's cost)")
    print(f"floor_latency_p50: {statistics.median(floor) * ms:.3f} ms  (no engine: listener -> task -> execute, interleaved)")
    print(f"floor_latency_p99: {percentile(floor, 99) * ms:.3f} ms")
    print(f"floor_latency_cpu_p99: {percentile(floor_cpu, 99) * ms:.3f} ms")
    print(f"rules_latency_engine_view_p50: {statistics.median(engine_view) * ms:.3f} ms  (engine.latencies, up to hub.execute)")
    print(f"hub_readings_per_s_without_rules: {base:,.0f} readings/s")
    print(f"rules_readings_per_s_no_firing: {with_rules:,.0f} readings/s")
    print(f"rules_throughput_ratio: {with_rules / base:.2f}  (with engine / without, same run)")
    print(f"rules_latency_p99: {percentile(measured, 99) * ms:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
