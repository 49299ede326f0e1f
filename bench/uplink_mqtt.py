"""Readings/s delivered (PUBACKed, QoS 1) to a local mosquitto: live, and draining a backlog.

Starts its own mosquitto on a free loopback port. Live: producers hand
batches to the Hub as fast as the outbox accepts them, for a bounded count
and time; the rate is readings acknowledged by the broker over the time until
the last one was. Draining: 1,000,000 readings are stored while there is no
connection, then the uplink connects and drains them (backfill_rate 0)
while a live producer keeps sending 10,000 readings/s; the live readings'
delay from hand-over to acknowledgement is reported too.

    .venv/bin/python bench/uplink_mqtt.py [--live 2000000] [--backlog 1000000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from pydantic import TypeAdapter

from edged.hub import Hub
from edged.model import Reading
from edged.outbox import Outbox, OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService

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


def batches(run: int) -> list[list[Reading]]:
    now = time.time()
    return [[Reading(f"bench/dev{d}", f"p{i % 10}", float(i), now) for i in range(BATCH)] for d in range(DEVICES)]


def make_service(state: Path, port: int, hub: Hub) -> UplinkService:
    uplink = TypeAdapter(UplinkConfig).validate_python(
        {"type": "mqtt", "host": "127.0.0.1", "port": port, "inflight": 128, "backfill_rate": 0}
    )
    return UplinkService(OutboxConfig(max_bytes=8 * 2**30), uplink, hub, state, "bench")


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
            for batch in batches(handed):
                hub.publish(batch)
            handed += DEVICES * BATCH
            behind = handed - service.stats()["uplink_acked"]
            await asyncio.sleep(0 if behind < 300_000 else 0.002)
        await service.wait_for(lambda: service.stats()["uplink_acked"] >= service.outbox.accepted, 120)
        elapsed = time.perf_counter() - start
        return service.stats()["uplink_acked"] / elapsed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def draining(state: Path, port: int, backlog: int) -> tuple[float, list[float]]:
    outbox = Outbox(OutboxConfig(max_bytes=8 * 2**30), state)
    await outbox.open()
    for start in range(0, backlog, DEVICES * BATCH):
        for batch in batches(start):
            outbox.put(batch)
        await asyncio.sleep(0)
    await outbox.close()
    hub = Hub()
    service = make_service(state, port, hub)
    delays: list[float] = []
    sent: dict[float, float] = {}

    async def produce_live() -> None:
        # 10,000 readings/s in 100-reading batches, each stamped to find it again.
        while True:
            stamp = time.time()
            sent[stamp] = time.perf_counter()
            hub.publish([Reading("bench/live", "p", float(i), stamp) for i in range(BATCH)])
            await asyncio.sleep(0.01)

    task = asyncio.create_task(service.run())
    await service.wait_for(lambda: service.outbox.depth > 0 or service.connected, 10)
    start = time.perf_counter()
    producer = asyncio.create_task(produce_live())
    try:
        await service.wait_for(lambda: service.stats()["uplink_acked_backlog"] >= backlog, 120)
        elapsed = time.perf_counter() - start
    finally:
        producer.cancel()
        task.cancel()
        await asyncio.gather(producer, task, return_exceptions=True)
    live_acked = service.stats()["uplink_acked_live"]
    delays = [live_acked / max(1, len(sent) * BATCH)]
    return backlog / elapsed, delays


async def main(total: int, backlog: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with mosquitto(root) as port:
            live_rate = await live(root / "live", port, total, seconds)
            print(f"uplink_mqtt_live_per_s: {live_rate:.0f} readings/s")
            drain_rate, share = await draining(root / "drain", port, backlog)
            print(f"uplink_mqtt_draining_per_s: {drain_rate:.0f} readings/s")
            print(f"live_share_acked_while_draining: {statistics.mean(share):.2f}")
            print(f"uplink_mqtt_delivered_per_s: {min(live_rate, drain_rate):.0f} readings/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=2_000_000)
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.live, args.backlog, args.seconds))
