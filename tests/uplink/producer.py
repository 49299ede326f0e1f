"""A gateway in a process of its own, for fault tests: a Hub, a counting
source, and the uplink service with its outbox.

    python -m tests.uplink.producer --port P --state DIR --run N [--readings R] [--max-bytes B]

Each device's readings carry ``run * 1_000_000 + n`` (n = 0, 1, ...). After
every outbox commit it prints one JSON line: this process's accepted count,
the outbox's bytes and depth, and the highest value committed per device.
SIGTERM stops it cleanly (everything handed over is committed first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from pydantic import TypeAdapter

from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import Reading
from edged.outbox import Outbox, OutboxConfig, Row
from edged.uplink.config import UplinkConfig
from edged.uplink.uplinks import single

DEVICES = [f"fault/d{i}" for i in range(4)]
BATCH = 20


def report(outbox: Outbox, start_accepted: int, highest: dict[str, float]) -> None:
    def on_commit(rows: list[Row]) -> None:
        for row in rows:
            if row.kind == 0:
                highest[row.subject] = json.loads(row.payload)[-1][1]
        line = {
            "accepted": outbox.accepted - start_accepted,
            "bytes": outbox.bytes,
            "depth": outbox.depth,
            "highest": highest,
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    outbox.subscribe(on_commit)


async def produce(hub: Hub, run: int, limit: int) -> None:
    n = 0
    while n < limit:
        for device in DEVICES:
            hub.publish([Reading(device, "n", run * 1_000_000 + n + i, float(n + i)) for i in range(BATCH)])
        n += BATCH
        await asyncio.sleep(0.005)  # a poll interval


async def main(args: argparse.Namespace) -> None:
    hub = Hub()
    uplink = TypeAdapter(UplinkConfig).validate_python(
        {"type": "mqtt", "host": "127.0.0.1", "port": args.port, "client_id": f"producer-{args.run}",
         "inflight": 16, "connect_timeout": 1, "keepalive": 5}
    )
    outbox = OutboxConfig(max_bytes=args.max_bytes, row_readings=BATCH)
    service = single(outbox, uplink, hub, Path(args.state), "gw", backoff=Backoff(initial=0.05, maximum=0.3))
    task = asyncio.create_task(service.run())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    await service.wait_for(lambda: service.outbox.is_open)
    report(service.outbox, service.outbox.accepted, {})
    producer = asyncio.create_task(produce(hub, args.run, args.readings))
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        producer.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--readings", type=int, default=10**9)
    parser.add_argument("--max-bytes", type=int, default=2**30)
    asyncio.run(main(parser.parse_args()))
