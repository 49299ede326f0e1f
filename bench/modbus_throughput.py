"""Modbus polling throughput: points per second into the Hub, CPU cost per
point, poll lateness and peak RSS.

The peer is NOT pymodbus's server (it saturates long before the adapter
does) but a minimal asyncio Modbus TCP responder in this file: it answers
FC 3/4 reads for any unit id with register values that change on every
request, so every polled point is a changed point that reaches the Hub. It
runs in its own process pinned to one core; edged (Hub + ModbusAdapter with
pymodbus's AsyncModbusTcpClient) runs pinned to the other.

Phases (each prints its figures):
  rtt        the bare loopback round trip of one read (no edged): what bounds
             one connection, on which requests go one at a time.
  layout     10 unit ids x 100 holding registers on one connection, polled
             as fast as the adapter can (interval 1 ms): points/s, CPU s per
             1000 points, peak RSS of this Modbus-only process.
  saturated  the layout on 10 connections (--connections), interval 1 ms:
             the most points/s edged delivers on its one core (headline).
  scale-N    N = 1,000 / 10,000 / 100,000 points (10 units x 100 registers
             per connection, 1 / 10 / 100 connections) polled at an interval
             that offers --rate points/s: delivered points/s, CPU s per 1000
             points (flat = cost per point independent of size), poll
             lateness p50/p99. The largest size runs again after gc.freeze()
             (the start-up heap kept out of garbage-collection passes).
The headline (last line) is the saturated rate.

Usage: python bench/modbus_throughput.py [--seconds 5] [--rate 135000] [--max-points 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNITS = 10
REGISTERS = 100


# -- the responder (runs in its own process) -------------------------------


class Responder(asyncio.Protocol):
    """Answers Modbus TCP reads (FC 3, 4) with values that change on every request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""
        self.turns: dict[tuple[int, int, int], int] = {}  # (unit, function, address) -> image last sent
        # two register images with every register different between them
        self.images = [struct.pack(">125H", *[(i * 7 + k * 1000) & 0xFFFF for i in range(125)]) for k in (1, 2)]

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        out = []
        while len(buffer) >= 8:
            tid, _, length, unit, function = struct.unpack_from(">HHHBB", buffer)
            if len(buffer) < 6 + length:
                break
            if function in (3, 4):
                count = struct.unpack_from(">H", buffer, 10)[0]
                key = (unit, function, struct.unpack_from(">H", buffer, 8)[0])
                turn = self.turns[key] = self.turns.get(key, 0) ^ 1
                payload = self.images[turn][: count * 2]
                out.append(struct.pack(">HHHBBB", tid, 0, 3 + 2 * count, unit, function, 2 * count) + payload)
            else:  # exception 1: illegal function
                out.append(struct.pack(">HHHBBB", tid, 0, 3, unit, function | 0x80, 1))
            buffer = buffer[6 + length :]
        self.buffer = buffer
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)  # the parent reads the port from here
    async with server:
        await server.serve_forever()


# -- the edged side --------------------------------------------------------


def pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def modbus_config(port: int, connections: int, interval: float):
    from edged.adapters.modbus.config import ModbusConfig

    points = [{"key": f"r{a}", "address": a} for a in range(REGISTERS)]
    return ModbusConfig.model_validate(
        {
            "type": "modbus",
            "name": "bench",
            "connections": [
                {
                    "transport": "tcp", "host": "127.0.0.1", "port": port, "timeout": 5,
                    "devices": [
                        {"id": f"c{c}u{u}", "unit_id": u, "interval": interval, "max_interval": None, "points": points}
                        for u in range(1, UNITS + 1)
                    ],
                }
                for c in range(connections)
            ],
        }
    )


async def run_phase(port: int, connections: int, interval: float, seconds: float, freeze: bool = False) -> dict[str, float]:
    from edged.adapters.modbus.adapter import ModbusAdapter
    from edged.hub import Hub

    hub = Hub()
    delivered = 0

    def count(batch) -> None:
        nonlocal delivered
        delivered += len(batch)

    hub.subscribe(count)
    total = connections * UNITS
    all_online = asyncio.Event()
    hub.subscribe_events(lambda _: sum(d.online for d in hub.devices.values()) == total and all_online.set())
    adapter = ModbusAdapter(modbus_config(port, connections, interval), hub, Path(tempfile.gettempdir()))
    task = asyncio.create_task(adapter.run())
    async with asyncio.timeout(60):
        await all_online.wait()
    if freeze:  # as a daemon does once started: keep the start-up heap out of every later GC pass
        gc.freeze()
    await asyncio.sleep(min(1.0, seconds / 4))  # warm up past the staggered start
    adapter.lateness.clear()
    delivered = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    points = delivered
    late = sorted(adapter.lateness)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gc.unfreeze()
    gc.collect()  # free this phase's adapter before the next one is built
    return {
        "points_per_s": points / wall,
        "cpu_per_1000": cpu / points * 1000 if points else float("nan"),
        "cpu_share": cpu / wall,
        "late_p50_ms": statistics.median(late) * 1000 if late else float("nan"),
        "late_p99_ms": late[int(len(late) * 0.99)] * 1000 if late else float("nan"),
        "errors": adapter.errors_total,
    }


async def round_trip(port: int, count: int = 2000) -> float:
    """Median seconds of one 100-register read, request to response, with a bare asyncio client."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    try:
        for tid in range(1, count + 1):
            started = time.perf_counter()
            writer.write(struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, 0, REGISTERS))
            await reader.readexactly(9 + 2 * REGISTERS)
            times.append(time.perf_counter() - started)
    finally:
        writer.close()
        await writer.wait_closed()
    return statistics.median(times)


async def bench(args: argparse.Namespace, port: int) -> None:
    print("peer: minimal asyncio Modbus TCP responder in bench/modbus_throughput.py (not pymodbus's server), "
          "own process on its own core; edged pinned to the other core")
    rtt = await round_trip(port)
    print(f"loopback_round_trip_p50: {rtt * 1e6:.0f} us (bare client, one {REGISTERS}-register read)")
    print(f"layout: {UNITS} unit ids x {REGISTERS} holding registers (uint16), changing every poll")
    layout = await run_phase(port, 1, 0.001, args.seconds)
    print(f"layout_1conn_points_per_s: {layout['points_per_s']:.0f} points/s (one connection: bound by round trips)")
    print(f"layout_1conn_cpu_per_1000_points: {layout['cpu_per_1000']:.5f} s")
    print(f"layout_1conn_cpu_share: {layout['cpu_share']:.2f}")
    print(f"layout_1conn_peak_rss: {rss_mb():.1f} MB")
    saturated = await run_phase(port, args.connections, 0.001, args.seconds)
    print(f"saturated_{args.connections}conn_points_per_s: {saturated['points_per_s']:.0f} points/s")
    print(f"saturated_{args.connections}conn_cpu_per_1000_points: {saturated['cpu_per_1000']:.5f} s")
    print(f"saturated_{args.connections}conn_cpu_share: {saturated['cpu_share']:.2f}")
    print(f"saturated_{args.connections}conn_peak_rss: {rss_mb():.1f} MB")
    sizes = [n for n in (1_000, 10_000, 100_000) if n <= args.max_points]
    for size in sizes:
        connections = size // (UNITS * REGISTERS)
        interval = size / args.rate
        # the largest size runs twice: as is, and with the start-up heap frozen out of GC passes (gc.freeze())
        for frozen in (False, True) if size == sizes[-1] else (False,):
            result = await run_phase(port, connections, interval, args.seconds, frozen)
            name = f"scale_{size}_gc_frozen" if frozen else f"scale_{size}"
            print(f"{name}_offered: {args.rate} points/s (interval {interval * 1000:.1f} ms, {connections} connections)")
            print(f"{name}_points_per_s: {result['points_per_s']:.0f} points/s")
            print(f"{name}_cpu_per_1000_points: {result['cpu_per_1000']:.5f} s")
            print(f"{name}_lateness_p50: {result['late_p50_ms']:.2f} ms")
            print(f"{name}_lateness_p99: {result['late_p99_ms']:.2f} ms")
            print(f"{name}_errors: {result['errors']}")
            print(f"{name}_peak_rss: {rss_mb():.1f} MB")
    print(f"modbus_points_per_s: {saturated['points_per_s']:.0f} points/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per phase")
    parser.add_argument("--rate", type=int, default=135_000, help="offered points/s in the scale phases")
    parser.add_argument("--connections", type=int, default=10, help="connections in the saturated phase")
    parser.add_argument("--max-points", type=int, default=100_000, help="largest scale phase")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        pin(1)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
        return 0
    pin(0)
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.strip().isdigit():
            raise SystemExit("the responder did not start")
        asyncio.run(bench(args, int(line)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
