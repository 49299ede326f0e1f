"""The headline figure: Modbus TCP -> edged -> MQTT (QoS 1) -> a subscriber.

A minimal Modbus TCP responder (bench/modbus_throughput.py --serve; every
register changes on every read, so every polled point is a changed point)
is polled by a real ``edged run`` process (Modbus adapter, --rules rules
loaded that read the polled points, the SQLite outbox, the MQTT uplink with
QoS 1) publishing to a mosquitto started here; a subscriber in this process
counts what arrives. edged is pinned to one core; the responder, mosquitto
and the subscriber share the other.

For each offered rate (points/s) it prints delivered points/s, edged's CPU
seconds per 1000 points, data age p50/p99 (register read to arrival at the
subscriber) and edged's RSS. Then it stops the responder, waits until the
outbox is empty and checks that every accepted reading arrived: lost must
be 0. The last line is the highest delivered rate.

    python bench/modbus_to_mqtt.py [--rates 50000,135000,200000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import aiomqtt
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon_process import free_port  # noqa: E402
from tests.uplink.peers import Broker  # noqa: E402

UNITS, REGISTERS = 10, 100  # per connection: 1,000 points


def load_adapter(port: int, connections: int, interval: float) -> dict:
    """A Modbus adapter polling ``connections`` x 10 units x 100 registers of the responder at ``port``."""
    points = [{"key": f"r{a}", "address": a} for a in range(REGISTERS)]
    return {
        "type": "modbus",
        "name": "load",
        "connections": [
            {
                "transport": "tcp", "host": "127.0.0.1", "port": port,
                "devices": [
                    {"id": f"c{c}u{u}", "unit_id": u, "interval": interval, "max_interval": "1h", "points": points}
                    for u in range(1, UNITS + 1)
                ],
            }
            for c in range(connections)
        ],
    }


def config_text(state: Path, http_port: int, modbus_port: int, mqtt_port: int, connections: int,
                interval: float, rules: int) -> str:
    """The bench's configuration, as JSON (which is YAML)."""
    config = {
        "gateway": {"id": "bench", "state_dir": str(state)},
        "status": {"http": {"host": "127.0.0.1", "port": http_port}},
        "adapters": [load_adapter(modbus_port, connections, interval)],
        "rules": [
            {
                "id": f"r{i}",
                "triggers": [{"type": "threshold", "point": f"load/c{i % connections}u{1 + i % UNITS}.r{i % REGISTERS}",
                              "above": 70000}],
                "actions": [{"type": "log", "message": "never"}],
            }
            for i in range(rules)
        ],
        "outbox": {"max_bytes": "4GiB"},
        "uplink": {"type": "mqtt", "host": "127.0.0.1", "port": mqtt_port, "inflight": 256},
    }
    return json.dumps(config, indent=1)


class Counter:
    """Counts readings arriving at the broker and their age."""

    def __init__(self) -> None:
        self.readings = 0
        self.last: dict[tuple[str, str], float] = {}
        self.out_of_order = 0
        self.events: set[int] = set()
        self.seen: set[tuple[str, str, float]] = set()
        self.ages: list[float] = []
        self.sampling = False

    def take(self, topic: str, payload: bytes) -> None:
        now = time.time()
        message = json.loads(payload)
        if "/events/" in topic:  # device online/offline and rule events: the outbox counts each as one
            self.events.add(message["seq"])
            return
        device = message["device"]
        readings = message["readings"]
        self.readings += len(readings)
        seen = self.seen
        last = self.last
        for key, _value, ts, _quality in readings:
            seen.add((device, key, ts))
            if last.get((device, key), 0.0) > ts:
                self.out_of_order += 1
            last[(device, key)] = ts
        if self.sampling:
            self.ages.extend(now - r[2] for r in readings[:: max(1, len(readings) // 10)])


async def api(session: aiohttp.ClientSession, port: int) -> dict:
    async with session.get(f"http://127.0.0.1:{port}/api/status") as response:
        return await response.json()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def one_rate(rate: float, args: argparse.Namespace, folder: Path, broker: Broker) -> dict[str, float]:
    # Requests on one connection go one at a time: enough connections that each
    # needs fewer than ~50 requests/s keeps the offered rate independent of round trips.
    connections = args.connections or max(1, round(rate / (UNITS * REGISTERS * 5)))
    interval = connections * UNITS * REGISTERS / rate
    responder = subprocess.Popen([sys.executable, str(ROOT / "bench" / "modbus_throughput.py"), "--serve"],
                                 stdout=subprocess.PIPE, text=True)
    modbus_port = int(responder.stdout.readline())  # type: ignore[union-attr]
    pin(responder.pid, 0)
    http_port = free_port()
    state = folder / f"state-{int(rate)}"
    config = folder / f"config-{int(rate)}.yaml"
    config.write_text(config_text(state, http_port, modbus_port, broker.port, connections, interval, args.rules))
    edged = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pin(edged.pid, 1)
    counter = Counter()
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port, max_queued_incoming_messages=0) as client, \
                aiohttp.ClientSession() as session:
            await client.subscribe("edged/bench/data/#", qos=1)
            await client.subscribe("edged/bench/events/#", qos=1)

            async def consume() -> None:
                async for message in client.messages:
                    counter.take(message.topic.value, message.payload)  # type: ignore[arg-type]

            consumer = asyncio.create_task(consume())
            async with asyncio.timeout(60):
                while True:
                    with contextlib.suppress(aiohttp.ClientError):
                        if (await api(session, http_port))["adapters"]["load"]["online"] == connections * UNITS:
                            break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(args.warmup)
            process = psutil.Process(edged.pid)
            cpu0, n0, t0 = sum(process.cpu_times()[:2]), counter.readings, time.monotonic()
            counter.sampling = True
            await asyncio.sleep(args.seconds)
            counter.sampling = False
            cpu1, n1, t1 = sum(process.cpu_times()[:2]), counter.readings, time.monotonic()
            rss = process.memory_info().rss / 2**20
            responder.terminate()
            # Drain: wait until the outbox is empty, then compare what it accepted with what arrived.
            async with asyncio.timeout(300):
                while True:
                    status = await api(session, http_port)
                    if status["outbox"]["depth"] == 0 and status["adapters"]["load"]["online"] == 0:
                        break
                    await asyncio.sleep(0.5)
            status = await api(session, http_port)
            accepted = status["outbox"]["accepted"]
            # Everything acknowledged has reached the broker; let the subscriber take the rest.
            last = -1
            while counter.readings != last:
                last = counter.readings
                await asyncio.sleep(2.0)
            consumer.cancel()
    finally:
        for proc in (edged, responder):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            if proc.poll() is None:
                proc.kill()
    delivered = (n1 - n0) / (t1 - t0)
    return {
        "offered": rate,
        "delivered": delivered,
        "cpu_per_1000": (cpu1 - cpu0) / max(1, n1 - n0) * 1000,
        "age_p50_ms": pct(counter.ages, 0.5) * 1000,
        "age_p99_ms": pct(counter.ages, 0.99) * 1000,
        "rss_mb": rss,
        "accepted": accepted,
        "unique_delivered": len(counter.seen) + len(counter.events),
        "lost": max(0, accepted - len(counter.seen) - len(counter.events)),
        "out_of_order": counter.out_of_order,
        "duplicates": counter.readings - len(counter.seen),
    }


CPUS = sorted(os.sched_getaffinity(0))  # taken before this process pins itself


def pin(pid: int, cpu: int) -> None:
    """Pin ``pid`` to the ``cpu``-th core this script may use (nothing on a single core)."""
    with contextlib.suppress(OSError):
        if len(CPUS) > 1:
            os.sched_setaffinity(pid, {CPUS[cpu % len(CPUS)]})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="50000,135000,200000", help="offered points/s, comma separated")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=0, help="Modbus TCP connections (default: by rate)")
    parser.add_argument("--rules", type=int, default=100, help="rules loaded (they read polled points, never fire)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="edged-bench-"))
    (folder / "broker").mkdir()
    broker = Broker(folder / "broker")
    broker.start()
    pin(broker.proc.pid, 0)  # type: ignore[union-attr]
    pin(os.getpid(), 0)
    results = []
    try:
        for rate in (float(r) for r in args.rates.split(",")):
            result = await one_rate(rate, args, folder, broker)
            results.append(result)
            print(
                f"offered {rate:,.0f}/s: delivered {result['delivered']:,.0f} points/s, "
                f"cpu {result['cpu_per_1000']:.4f} s/1000 points, age p50 {result['age_p50_ms']:.0f} ms "
                f"p99 {result['age_p99_ms']:.0f} ms, rss {result['rss_mb']:.0f} MiB, accepted {result['accepted']:,}, "
                f"lost {result['lost']}, duplicates {result['duplicates']}, out of order {result['out_of_order']}",
                flush=True,
            )
    finally:
        broker.stop()
    best = max(results, key=lambda r: r["delivered"])
    print(f"lost_total: {sum(r['lost'] for r in results)} readings")
    print(f"cpu_per_1000_points: {statistics.median(r['cpu_per_1000'] for r in results):.4f} s")
    print(f"modbus_to_mqtt_points_per_s: {best['delivered']:.0f} points/s")


if __name__ == "__main__":
    asyncio.run(main())
