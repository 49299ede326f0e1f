"""Readings/s delivered (PUBACKed, QoS 1) to a local mosquitto: live, and draining a backlog.

Starts its own mosquitto on a free loopback port. Live: producers hand
batches to the Hub as fast as the outbox accepts them, for a bounded count
and time; the rate is readings acknowledged by the broker over the time until
the last one was. Draining: 1,000,000 readings are stored while there is no
connection, then the uplink connects and drains them (backfill_rate 0)
while a live producer keeps sending 10,000 readings/s; the live batches'
delay from hand-over to arrival at a subscriber of the same broker is
reported too.

    .venv/bin/python bench/uplink_mqtt.py [--live 2000000] [--backlog 1000000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt
from pydantic import TypeAdapter

from edged.hub import Hub
from edged.model import Reading
from edged.outbox import Outbox, OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService
from edged.uplink.uplinks import single

DEVICES = 50
BATCH = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mosquitto(workdir: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("mosquitto did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def batches() -> list[list[Reading]]:
    now = time.time()
    return [[Reading(f"bench/dev{d}", f"p{i % 10}", float(i), now) for i in range(BATCH)] for d in range(DEVICES)]


def make_service(state: Path, port: int, hub: Hub) -> UplinkService:
    uplink = TypeAdapter(UplinkConfig).validate_python(
        {"type": "mqtt", "host": "127.0.0.1", "port": port, "inflight": 128, "backfill_rate": 0}
    )
    return single(OutboxConfig(max_bytes=8 * 2**30), uplink, hub, state, "bench")


async def live(state: Path, port: int, total: int, seconds: float) -> float:
    hub = Hub()
    service = make_service(state, port, hub)
    task = asyncio.create_task(service.run())
    try:
        await service.wait_for(lambda: service.connected, 10)
        start = time.perf_counter()
        deadline = start + seconds
        handed = 0
        while handed < total and time.perf_counter() < deadline:
            for batch in batches():
                hub.publish(batch)
            handed += DEVICES * BATCH
            behind = handed - service.stats().acked
            await asyncio.sleep(0 if behind < 300_000 else 0.002)
        await service.wait_for(lambda: service.stats().acked >= service.outbox.accepted, 120)
        elapsed = time.perf_counter() - start
        return service.stats().acked / elapsed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def draining(state: Path, port: int, backlog: int) -> tuple[float, list[float]]:
    """Drain ``backlog`` stored readings while live ones keep coming; return the rate and live delays (s)."""
    outbox = Outbox(OutboxConfig(max_bytes=8 * 2**30), state)
    await outbox.open()
    for _ in range(0, backlog, DEVICES * BATCH):
        for batch in batches():
            outbox.put(batch)
        await asyncio.sleep(0)
    await outbox.close()
    files = [outbox.path, outbox.path.with_name(outbox.path.name + "-wal")]
    on_disk = sum(f.stat().st_size for f in files if f.exists())
    print(f"backlog_bytes_on_disk_per_reading: {on_disk / backlog:.1f} bytes")
    hub = Hub()
    service = make_service(state, port, hub)
    delays: list[float] = []
    subscribed = asyncio.Event()

    async def watch_live() -> None:
        # The broker's view: how long after hand-over each live batch arrived.
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe("edged/bench/data/bench/live", qos=1)
            subscribed.set()
            async for message in client.messages:
                delays.append(time.time() - json.loads(message.payload)["readings"][0][2])  # type: ignore[arg-type]

    async def produce_live() -> None:
        # 10,000 readings/s in 100-reading batches, stamped with the hand-over time.
        while True:
            stamp = time.time()
            hub.publish([Reading("bench/live", "p", float(i), stamp) for i in range(BATCH)])
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch_live())
    await asyncio.wait_for(subscribed.wait(), 10)
    task = asyncio.create_task(service.run())
    await service.wait_for(lambda: service.outbox.is_open, 10)
    start = time.perf_counter()
    producer = asyncio.create_task(produce_live())
    try:
        await service.wait_for(lambda: service.stats().acked_backlog >= backlog, 120)
        elapsed = time.perf_counter() - start
    finally:
        producer.cancel()
        task.cancel()
        watcher.cancel()
        await asyncio.gather(producer, task, watcher, return_exceptions=True)
    return backlog / elapsed, delays


async def main(total: int, backlog: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with mosquitto(root) as port:
            live_rate = await live(root / "live", port, total, seconds)
            print(f"uplink_mqtt_live_per_s: {live_rate:.0f} readings/s")
            drain_rate, delays = await draining(root / "drain", port, backlog)
            print(f"live_batches_while_draining: {len(delays)}")
            if delays:
                print(f"live_delay_while_draining_median: {statistics.median(delays) * 1000:.1f} ms")
                print(f"live_delay_while_draining_max: {max(delays) * 1000:.1f} ms")
            print(f"uplink_mqtt_draining_per_s: {drain_rate:.0f} readings/s")
            print(f"uplink_mqtt_delivered_per_s: {min(live_rate, drain_rate):.0f} readings/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=2_000_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.live, args.backlog, args.seconds))
