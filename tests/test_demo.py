"""``edged demo`` end to end: every adapter against its simulator, rules
loaded, and readings arriving at a real mosquitto through the outbox."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import aiomqtt

from tests.daemon_process import free_port
from tests.uplink.peers import Broker

ADAPTERS = {"sim", "plant", "factory", "zigbee", "ble"}


async def test_demo_shows_every_adapter_and_delivers_to_the_broker(tmp_path: Path):
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged", "demo", "--port", str(port), "--mqtt-port", str(broker.port),
        "--state-dir", str(tmp_path / "state"), "--table-every", "0",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("edged/edged-demo/data/#", qos=1)
            delivered: set[str] = set()

            async def collect() -> None:
                async for message in client.messages:
                    delivered.add(json.loads(message.payload)["device"].split("/")[0])
                    if {"plant", "factory", "zigbee", "ble"} <= delivered:
                        return

            async with asyncio.timeout(90):
                await collect()
        online: set[str] = set()
        async with aiohttp.ClientSession() as session, asyncio.timeout(30):
            while online != ADAPTERS:  # the API has no push; poll it, bounded by the timeout
                async with session.get(f"http://127.0.0.1:{port}/api/devices") as response:
                    devices = await response.json()
                online = {
                    d["adapter"] for d in devices
                    if d["online"] and any(p["quality"] == "good" for p in d["points"].values())
                }
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        broker.stop()
