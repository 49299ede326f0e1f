"""Readings/s delivered (QoS 1, acknowledged by mosquitto) per MQTT profile, and with two uplinks at once.

For each profile (edged JSON, Sparkplug B, the ThingsBoard gateway API) the
gateway's uplinks run against a local mosquitto started here: 50 online
devices of 10 points each are registered in the Hub, then batches of 100
readings per device are handed to the Hub as fast as the outbox takes them,
for a bounded count and time. The rate is the readings the uplink had
acknowledged over the time until the last one was. "two_uplinks" runs the
edged profile to two brokers at once from one outbox and counts a reading
once it reached both. One core, as ``taskset -c 0`` gives it when run so.

    .venv/bin/python bench/uplink_profiles.py [--readings 1000000] [--seconds 20]

The last line is the slowest profile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

sys.path.insert(0, str(Path(__file__).resolve().parent))

from uplink_mqtt import mosquitto

from edged.hub import Hub
from edged.model import Device, Point, Reading
from edged.outbox import OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.uplinks import Uplinks

DEVICES = 50
POINTS = 10
BATCH = 100
PROFILES: dict[str, dict[str, Any]] = {
    "edged": {},
    "sparkplug_b": {"profile": "sparkplug_b", "sparkplug": {"group_id": "bench"}},
    "thingsboard": {"profile": "thingsboard", "thingsboard": {}},
}


def uplink(port: int, extra: dict[str, Any]) -> UplinkConfig:
    return TypeAdapter(UplinkConfig).validate_python(
        {"type": "mqtt", "host": "127.0.0.1", "port": port, "inflight": 128, "backfill_rate": 0, **extra}
    )


def hub_with_devices() -> Hub:
    hub = Hub()
    for d in range(DEVICES):
        device = Device(f"bench/dev{d}", "bench", points={f"p{i}": Point(f"p{i}") for i in range(POINTS)})
        hub.add_device(device)
        hub.set_online(device.id, True)
    return hub


async def deliver(state: Path, configs: dict[str, UplinkConfig], total: int, seconds: float) -> float:
    """Readings/s that reached every uplink of ``configs``."""
    hub = hub_with_devices()
    uplinks = Uplinks.build(OutboxConfig(max_bytes=8 * 2**30), configs, hub, state, "bench")
    services = list(uplinks.services.values())

    def delivered() -> int:
        return min(service.stats().acked for service in services)

    task = asyncio.create_task(uplinks.run())
    try:
        await uplinks.wait_for(lambda: all(service.connected for service in services), 20)
        start = time.perf_counter()
        deadline = start + seconds
        handed = 0
        while handed < total and time.perf_counter() < deadline:
            now = time.time()
            for d in range(DEVICES):
                hub.publish([Reading(f"bench/dev{d}", f"p{i % POINTS}", float(i), now) for i in range(BATCH)])
            handed += DEVICES * BATCH
            await asyncio.sleep(0 if handed - delivered() < 300_000 else 0.002)
        await uplinks.wait_for(lambda: delivered() >= uplinks.outbox.accepted, 120)
        return delivered() / (time.perf_counter() - start)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def main(total: int, seconds: float, only: list[str]) -> None:
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with mosquitto(root) as port:
            for name, extra in PROFILES.items():
                if only and name not in only:
                    continue
                rates[name] = await deliver(root / name, {name: uplink(port, extra)}, total, seconds)
                print(f"uplink_profile_{name}_per_s: {rates[name]:.0f} readings/s", flush=True)
            if only and "two_uplinks" not in only:
                return
            (root / "second").mkdir()
            with mosquitto(root / "second") as second:
                configs = {"a": uplink(port, {}), "b": uplink(second, {})}
                rates["two_uplinks"] = await deliver(root / "two", configs, total, seconds)
                print(f"uplink_two_uplinks_per_s: {rates['two_uplinks']:.0f} readings/s (reached both)")
    for name, rate in rates.items():
        print(f"{name}: {rate / rates['edged']:.2f} of the edged profile")
    slowest = min(rates, key=lambda name: rates[name])
    print(f"uplink_profiles_slowest: {rates[slowest]:.0f} readings/s ({slowest})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--only", nargs="*", default=[], help="profiles to run (edged, sparkplug_b, thingsboard, two_uplinks)")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(arguments.readings, arguments.seconds, arguments.only))
