"""The Python peer's workload: Modbus TCP -> edged -> MQTT (QoS 1), sized as
the ThingsBoard IoT Gateway is usually measured.

A responder process on one core serves Modbus TCP: unit ids 1..D with 100
holding registers each, every register's value changing every 100 ms (a read
in the same 100 ms as the unit's previous read gets the next values, so
every poll of a unit offers 100 changed points whatever the phase between
the two clocks). A real ``edged run`` on the other core polls every unit
every 100 ms as uint16 points r0..r99 (default deadband and max_interval)
through the SQLite outbox (synchronous: normal) to a mosquitto started here,
with QoS 1. A subscriber in this process, on the responder's core, counts
the points that arrive and their data age (reading time to arrival) over
``--seconds`` after ``--warmup``. Offered = D x 1,000 points/s.

Runs (``--runs``, comma separated, in this order by default):
  10, 50, 200   D units on one connection
  multi         10 connections x 20 units (200,000 points/s offered)
  idle          one point polled once per second (1 reading/s): CPU % of a core
  empty         no adapter, the uplink and outbox on: CPU % of a core
  startup       process start to systemd READY=1 with 20,000 configured points (D=200),
                and VmRSS at READY with 1,000 and 20,000

Each run prints offered and delivered points/s, edged's CPU seconds per 1000
delivered points (and % of its core), its VmHWM and VmRSS, and data age
p50/p99. The last line is the delivered rate of the D=200 run.

    python bench/peer_workload.py [--runs 10,50,200,multi,idle,empty,startup] [--seconds 60] [--warmup 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.modbus_to_mqtt import CPUS, pct, pin  # noqa: E402  (CPUS is read before anything pins this process)
from tests.daemon_process import DaemonProcess, free_port  # noqa: E402
from tests.uplink.peers import Broker  # noqa: E402

REGISTERS = 100  # holding registers per unit, polled as r0..r99
TICK = 0.1  # seconds between value changes, and edged's poll interval
EDGED_CORE, PEER_CORE = 0, 1
RUNS = ("10", "50", "200", "multi", "idle", "empty", "startup")


# -- the responder (its own process, on the peer core) ---------------------------------


class UnitResponder(asyncio.Protocol):
    """Modbus TCP holding registers 0..99 of unit ids 1..``units``, changing every 100 ms.

    Any other unit id answers exception 11 (gateway target failed to respond), any
    other register exception 2 (illegal data address), any other function exception 1.
    """

    def __init__(self, units: int, served: Any) -> None:
        self.units = units
        self.served = served  # shared counter of registers sent, read by the bench
        self.buffer = b""
        self.generation = [0] * (units + 1)  # per unit: the 100 ms tick its last answer showed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        out = []
        tick = int(time.monotonic() / TICK)
        while len(buffer) >= 12:
            tid, _, length, unit, function = struct.unpack_from(">HHHBB", buffer)
            if len(buffer) < 6 + length:
                break
            out.append(self._answer(tid, unit, function, *struct.unpack_from(">HH", buffer, 8), tick))
            buffer = buffer[6 + length :]
        self.buffer = buffer
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]

    def _answer(self, tid: int, unit: int, function: int, address: int, count: int, tick: int) -> bytes:
        if function != 3:
            return struct.pack(">HHHBBB", tid, 0, 3, unit, function | 0x80, 1)
        if not 1 <= unit <= self.units:
            return struct.pack(">HHHBBB", tid, 0, 3, unit, function | 0x80, 11)
        if address + count > REGISTERS:
            return struct.pack(">HHHBBB", tid, 0, 3, unit, function | 0x80, 2)
        generation = self.generation[unit] = max(tick, self.generation[unit] + 1)
        self.served.value += count
        payload = image(generation)[2 * address : 2 * (address + count)]
        return struct.pack(">HHHBBB", tid, 0, 3 + 2 * count, unit, function, 2 * count) + payload


_IMAGES: dict[int, bytes] = {}


def image(generation: int) -> bytes:
    """The registers of one 100 ms tick: each differs from its value at any other tick of the run."""
    found = _IMAGES.get(generation)
    if found is None:
        if len(_IMAGES) > 64:
            _IMAGES.clear()
        found = _IMAGES[generation] = struct.pack(f">{REGISTERS}H",
                                                  *[(i * 7 + generation * 1000) & 0xFFFF for i in range(REGISTERS)])
    return found


def serve(units: int, served: Any, port: Any, cpu: int) -> None:
    """The responder process, on ``cpu``: listens on a free port, published through ``port``."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {cpu})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: UnitResponder(units, served), "127.0.0.1", 0, backlog=256)
        port.value = server.sockets[0].getsockname()[1]
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class Peer:
    """The responder process, and what it has served."""

    def __init__(self, units: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.served = context.Value("Q", 0, lock=False)
        self._port = context.Value("i", 0, lock=False)
        self.process = context.Process(target=serve, args=(units, self.served, self._port, CPUS[PEER_CORE % len(CPUS)]),
                                       daemon=True)

    def __enter__(self) -> Peer:
        self.process.start()
        deadline = time.monotonic() + 30
        while not self._port.value:
            if time.monotonic() > deadline or not self.process.is_alive():
                raise RuntimeError("the Modbus responder did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()

    @property
    def port(self) -> int:
        return int(self._port.value)


# -- edged's configuration --------------------------------------------------------------


def modbus_adapter(port: int, connections: int, units: int, points: int = REGISTERS, interval: float = TICK) -> dict:
    """Every unit on every connection polled every ``interval`` as uint16 points r0..r{points-1}."""
    keys = [{"key": f"r{a}", "address": a} for a in range(points)]
    return {
        "type": "modbus",
        "name": "peer",
        "connections": [
            {
                "transport": "tcp", "host": "127.0.0.1", "port": port,
                "devices": [{"id": f"c{c}u{u}", "unit_id": u, "interval": interval, "points": keys}
                            for u in range(1, units + 1)],
            }
            for c in range(connections)
        ],
    }  # fmt: skip


def config_text(state: Path, http_port: int, mqtt_port: int, adapters: list[dict], inflight: int) -> str:
    """The run's configuration, as JSON (which is YAML)."""
    return json.dumps({
        "gateway": {"id": "bench", "state_dir": str(state)},
        "status": {"http": {"host": "127.0.0.1", "port": http_port}},
        "adapters": adapters,
        "outbox": {"synchronous": "normal", "max_bytes": "4GiB"},
        "uplink": {"type": "mqtt", "host": "127.0.0.1", "port": mqtt_port, "qos": 1, "inflight": inflight},
    }, indent=1)  # fmt: skip


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Arrivals:
    """Points arriving at the broker, and a sample of their data age (reading time to arrival)."""

    points: int = 0
    devices: set[str] = field(default_factory=set)
    ages: list[float] = field(default_factory=list)
    sampling: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, payload: bytes) -> None:
        now = time.time()
        message = json.loads(payload)
        readings = message["readings"]
        self.points += len(readings)
        if message["device"] not in self.devices:
            self.devices.add(message["device"])
            self.changed.set()
        if self.sampling:  # one reading in ten: keeps the subscriber's core free for the responder and broker
            self.ages.extend(now - reading[2] for reading in readings[::10])


def memory(pid: int) -> tuple[float, float]:
    """VmHWM and VmRSS of ``pid``, MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid``."""
    times = psutil.Process(pid).cpu_times()
    return times.user, times.system


def core_busy() -> float:
    """Busy seconds of the peer core so far (what its responder, broker and subscriber leave free shows here)."""
    times = psutil.cpu_times(percpu=True)[CPUS[PEER_CORE % len(CPUS)]]
    return sum(times) - times.idle - times.iowait


@dataclass
class Result:
    name: str
    offered: float
    delivered: float = 0.0
    cpu_per_1000: float = float("nan")
    cpu_share: float = float("nan")  # % of one core
    system_share: float = float("nan")  # of which in the kernel
    peer_core: float = float("nan")  # % busy of the core the responder, broker and subscriber share
    hwm: float = float("nan")
    rss: float = float("nan")
    age_p50_ms: float = float("nan")
    age_p99_ms: float = float("nan")
    served: float = float("nan")  # registers/s the responder answered
    ready_s: list[float] = field(default_factory=list)

    def line(self) -> str:
        if self.ready_s:
            return (f"{self.name}: start to READY median {statistics.median(self.ready_s):.3f} s "
                    f"({' '.join(f'{s:.3f}' for s in self.ready_s)}), VmHWM {self.hwm:.1f} MiB, "
                    f"VmRSS {self.rss:.1f} MiB at READY")  # fmt: skip
        return (f"{self.name}: offered {self.offered:,.0f} points/s (served {self.served:,.0f}), "
                f"delivered {self.delivered:,.0f} points/s, cpu {self.cpu_per_1000:.4f} s/1000 points "
                f"({self.cpu_share:.2f} % of a core, {self.system_share:.2f} system), peer core {self.peer_core:.0f} % busy, "
                f"VmHWM {self.hwm:.1f} MiB, VmRSS {self.rss:.1f} MiB, "
                f"age p50 {self.age_p50_ms:.1f} ms p99 {self.age_p99_ms:.1f} ms")  # fmt: skip


class Bench:
    def __init__(self, args: argparse.Namespace, folder: Path, broker: Broker) -> None:
        self.args = args
        self.folder = folder
        self.broker = broker
        self.runs = 0

    def _config(self, adapters: list[dict]) -> tuple[Path, int]:
        self.runs += 1
        http_port = free_port()
        path = self.folder / f"config-{self.runs}.yaml"
        path.write_text(config_text(self.folder / f"state-{self.runs}", http_port, self.broker.port, adapters,
                                    self.args.inflight))  # fmt: skip
        return path, http_port

    @contextlib.asynccontextmanager
    async def edged(self, adapters: list[dict]):  # type: ignore[no-untyped-def]
        """A running ``edged run`` on the edged core, stopped (SIGTERM, then SIGKILL) on exit."""
        config, http_port = self._config(adapters)
        process = DaemonProcess(config, http_port)
        await process.start()
        assert process.proc is not None
        pin(process.proc.pid, EDGED_CORE)
        try:
            yield process
        except BaseException:
            print("\n".join(["edged's last output lines:", *process.lines[-20:]]), file=sys.stderr)
            raise
        finally:
            if process.proc.returncode is None:
                process.signal(signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await process.wait_exit(15)
            await process.close()

    async def measure(self, name: str, offered: float, adapters: list[dict], devices: int, peer: Peer | None) -> Result:
        """Start edged, wait for data from ``devices`` devices, warm up, then measure one window."""
        arrivals = Arrivals()
        result = Result(name, offered)
        async with aiomqtt.Client("127.0.0.1", self.broker.port, max_queued_incoming_messages=0) as client, \
                self.edged(adapters) as process:  # fmt: skip
            await client.subscribe("edged/bench/data/#", qos=1)

            async def consume() -> None:
                async for message in client.messages:
                    arrivals.take(message.payload)  # type: ignore[arg-type]

            consumer = asyncio.create_task(consume())
            try:
                await process.wait_notification("READY=1", timeout=60)
                async with asyncio.timeout(60):
                    while len(arrivals.devices) < devices:
                        arrivals.changed.clear()
                        await arrivals.changed.wait()
                await asyncio.sleep(self.args.warmup)
                pid = process.proc.pid  # type: ignore[union-attr]
                served0 = peer.served.value if peer else 0
                cpu0, peer0, points0, t0 = cpu_seconds(pid), core_busy(), arrivals.points, time.monotonic()
                arrivals.sampling = True
                await asyncio.sleep(self.args.seconds)
                arrivals.sampling = False
                cpu1, peer1, points1, t1 = cpu_seconds(pid), core_busy(), arrivals.points, time.monotonic()
                served1 = peer.served.value if peer else 0
                result.hwm, result.rss = memory(pid)
            finally:
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
        wall, points = t1 - t0, points1 - points0
        result.delivered = points / wall
        result.served = (served1 - served0) / wall
        cpu = sum(cpu1) - sum(cpu0)
        result.cpu_share, result.system_share = 100 * cpu / wall, 100 * (cpu1[1] - cpu0[1]) / wall
        result.peer_core = 100 * (peer1 - peer0) / wall
        result.cpu_per_1000 = cpu / points * 1000 if points else float("nan")
        result.age_p50_ms = pct(arrivals.ages, 0.5) * 1000
        result.age_p99_ms = pct(arrivals.ages, 0.99) * 1000
        return result

    async def units(self, units: int, connections: int = 1) -> Result:
        name = f"D={units}" if connections == 1 else f"multi {connections}x{units}"
        with Peer(units) as peer:
            adapters = [modbus_adapter(peer.port, connections, units)]
            return await self.measure(name, connections * units * REGISTERS / TICK, adapters, connections * units, peer)

    async def idle(self) -> Result:
        with Peer(1) as peer:
            return await self.measure("idle 1 reading/s", 1.0, [modbus_adapter(peer.port, 1, 1, 1, 1.0)], 1, peer)

    async def empty(self) -> Result:
        result = Result("empty (no adapter)", 0.0)
        async with self.edged([]) as process:
            await process.wait_notification("READY=1", timeout=60)
            await asyncio.sleep(self.args.warmup)
            pid = process.proc.pid  # type: ignore[union-attr]
            cpu0, peer0, t0 = cpu_seconds(pid), core_busy(), time.monotonic()
            await asyncio.sleep(self.args.seconds)
            cpu1, peer1, wall = cpu_seconds(pid), core_busy(), time.monotonic() - t0
            result.cpu_share, result.system_share = 100 * (sum(cpu1) - sum(cpu0)) / wall, 100 * (cpu1[1] - cpu0[1]) / wall
            result.peer_core = 100 * (peer1 - peer0) / wall
            result.hwm, result.rss = memory(pid)
        return result

    async def startup(self, units: int = 200, starts: int = 0) -> Result:
        result = Result(f"startup {units * REGISTERS:,} points", 0.0)
        with Peer(units) as peer:
            for _ in range(starts or self.args.starts):
                async with self.edged([modbus_adapter(peer.port, 1, units)]) as process:
                    result.ready_s.append(await process.wait_notification("READY=1", timeout=60))
                    result.hwm, result.rss = memory(process.proc.pid)  # type: ignore[union-attr]
        return result


def print_result(result: Result) -> None:
    print(result.line(), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma separated, of {', '.join(RUNS)}")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds after the first data before measuring")
    parser.add_argument("--starts", type=int, default=3, help="starts measured in the startup run")
    parser.add_argument("--inflight", type=int, default=256, help="the uplink's unacknowledged messages")
    args = parser.parse_args()
    runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown run {sorted(unknown)[0]!r}; expected any of {', '.join(RUNS)}")
    folder = Path(tempfile.mkdtemp(prefix="edged-peer-"))
    (folder / "broker").mkdir()
    broker = Broker(folder / "broker")
    broker.start()
    pin(broker.proc.pid, PEER_CORE)  # type: ignore[union-attr]
    pin(os.getpid(), PEER_CORE)
    print(f"edged on core {CPUS[EDGED_CORE % len(CPUS)]}; responder, mosquitto and subscriber on core "
          f"{CPUS[PEER_CORE % len(CPUS)]}; window {args.seconds:g} s after {args.warmup:g} s", flush=True)  # fmt: skip
    bench = Bench(args, folder, broker)
    results: dict[str, Result] = {}
    try:
        for run in runs:
            if run.isdigit():
                results[run] = await bench.units(int(run))
            elif run == "startup":  # also the memory at READY with 1,000 configured points
                print_result(await bench.startup(10, starts=1))
                results[run] = await bench.startup(200)
            elif run == "multi":
                results[run] = await bench.units(20, connections=10)
            else:
                results[run] = await getattr(bench, run)()
            print_result(results[run])
    finally:
        broker.stop()
    if "10" in results and "200" in results:
        per_point = (results["200"].hwm - results["10"].hwm) * 2**20 / (200 - 10) / REGISTERS
        print(f"memory per configured point (VmHWM, D=200 vs D=10): {per_point / 1024:.2f} KiB")
    if "200" in results:
        print(f"peer_workload_points_per_s: {results['200'].delivered:.0f} points/s")


if __name__ == "__main__":
    asyncio.run(main())
