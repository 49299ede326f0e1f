"""The Zigbee adapter on a real coordinator stick (ZNP or EZSP), nothing faked.

Skipped unless EDGED_ZIGBEE_RADIO names the stick's serial port; see
"Zigbee" in hwtests/README.md.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from edged.adapters.zigbee.adapter import BACKUP, DATABASE, ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.hub import Hub
from edged.model import Quality

ENV = os.environ.get
PORT = ENV("EDGED_ZIGBEE_RADIO")
pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not PORT, reason="set EDGED_ZIGBEE_RADIO to the serial port of a ZNP or EZSP stick"),
]
RADIO = ENV("EDGED_ZIGBEE_RADIO_TYPE", "znp")
TIMEOUT = float(ENV("EDGED_ZIGBEE_TIMEOUT", "60"))
JOIN_SECONDS = int(ENV("EDGED_ZIGBEE_JOIN", "0"))


@pytest.fixture
def state_dir(tmp_path) -> Path:
    """EDGED_ZIGBEE_STATE keeps the database between runs (paired devices stay paired)."""
    return Path(ENV("EDGED_ZIGBEE_STATE") or tmp_path / "zigbee")


def make(hub: Hub, state_dir: Path) -> ZigbeeAdapter:
    serial = {"path": PORT, "baudrate": int(ENV("EDGED_ZIGBEE_BAUD", "115200"))}
    if ENV("EDGED_ZIGBEE_FLOW_CONTROL"):
        serial["flow_control"] = ENV("EDGED_ZIGBEE_FLOW_CONTROL")
    config = ZigbeeConfig.model_validate({"type": "zigbee", "name": "zigbee", "radio": RADIO, "serial": serial})
    return ZigbeeAdapter(config, hub, state_dir)


async def until(hub: Hub, task: asyncio.Task[None], predicate, timeout: float = TIMEOUT) -> None:
    """Wait for ``predicate`` on every Hub change; fail early if the adapter ended."""
    changed = asyncio.Event()
    hub.subscribe(lambda batch: changed.set())
    hub.subscribe_events(lambda event: changed.set())
    task.add_done_callback(lambda _: changed.set())
    async with asyncio.timeout(timeout):
        while not (task.done() or predicate()):
            changed.clear()
            await changed.wait()
    if task.done():
        await task  # raises what stopped the adapter


async def started(adapter: ZigbeeAdapter) -> asyncio.Task[None]:
    task = asyncio.create_task(adapter.run())
    ready = asyncio.create_task(adapter.ready.wait())
    await asyncio.wait({task, ready}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if not adapter.ready.is_set():
        ready.cancel()
        task.cancel()
        await asyncio.gather(task, ready, return_exceptions=True)
        pytest.fail(f"the {RADIO} radio on {PORT} did not come up within {TIMEOUT:g} s; see the log for the reason")
    return task


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_network_starts_is_backed_up_and_resumes(state_dir):
    hub = Hub()
    adapter = make(hub, state_dir)
    task = await started(adapter)
    network = adapter.app.state.network_info
    await stopped(task)
    assert (state_dir / DATABASE).exists()
    backup = json.loads((state_dir / BACKUP).read_text())
    assert backup["extended_pan_id"].replace(":", "").lower() == str(network.extended_pan_id).replace(":", "").lower()

    again = make(hub, state_dir)
    task = await started(again)
    try:
        resumed = again.app.state.network_info
        assert (resumed.pan_id, resumed.extended_pan_id, resumed.channel) == (
            network.pan_id, network.extended_pan_id, network.channel,
        )
    finally:
        await stopped(task)


@pytest.mark.skipif(JOIN_SECONDS <= 0, reason="set EDGED_ZIGBEE_JOIN=120 to pair a device during the test")
async def test_a_device_joins_and_reports(state_dir):
    hub = Hub()
    adapter = make(hub, state_dir)
    task = await started(adapter)
    try:
        await adapter.permit_join(min(JOIN_SECONDS, 254))
        print(f"\njoining open for {JOIN_SECONDS} s: reset or pair a device now")

        def reported() -> bool:
            return any(
                d.online and any((r := hub.value(d.id, k)) is not None and r.quality is Quality.GOOD for k in d.points)
                for d in hub.adapter_devices(adapter.name)
            )

        await until(hub, task, reported, timeout=JOIN_SECONDS + TIMEOUT)
        paired = {d.id for d in hub.adapter_devices(adapter.name)}
        for device in hub.adapter_devices(adapter.name):
            values = {k: r.value for k in device.points if (r := hub.value(device.id, k)) is not None}
            print(device.id, device.manufacturer, device.model, values)
    finally:
        await stopped(task)

    # A restart knows the device from the database: no new pairing.
    fresh = Hub()
    again = make(fresh, state_dir)
    task = await started(again)
    try:
        assert {d.id for d in fresh.adapter_devices(again.name)} == paired
    finally:
        await stopped(task)


async def test_the_coordinator_answers_a_topology_scan(state_dir):
    """The network map from a real stick: the coordinator's own neighbour and routing
    tables (Mgmt_Lqi_req, Mgmt_Rtg_req) answered by its firmware; paired routers, if
    any, appear with the link quality they are heard with."""
    hub = Hub()
    adapter = make(hub, state_dir)
    task = await started(adapter)
    try:
        found = await adapter.scan_topology()
    finally:
        await stopped(task)
    coordinator = str(adapter.app.state.node_info.ieee)
    assert found["scanned_at"] is not None
    assert any(node["ieee"] == coordinator and node["role"] == "coordinator" for node in found["nodes"])
    for link in found["links"]:
        assert 0 <= link["lqi"] <= 255 and link["weak"] == (link["lqi"] < adapter.config.topology.weak_lqi)
