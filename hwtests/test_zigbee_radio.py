"""The Zigbee adapter on a real coordinator stick (ZNP or EZSP), nothing faked.

Skipped unless EDGED_ZIGBEE_RADIO names the stick's serial port; see
"Zigbee" in hwtests/README.md.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from edged.adapters.zigbee.adapter import BACKUP, DATABASE, ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.hub import Hub
from edged.model import Command, CommandStatus, Origin, Quality

ENV = os.environ.get
PORT = ENV("EDGED_ZIGBEE_RADIO")
pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not PORT, reason="set EDGED_ZIGBEE_RADIO to the serial port of a ZNP or EZSP stick"),
]
RADIO = ENV("EDGED_ZIGBEE_RADIO_TYPE", "znp")
TIMEOUT = float(ENV("EDGED_ZIGBEE_TIMEOUT", "60"))
JOIN_SECONDS = int(ENV("EDGED_ZIGBEE_JOIN", "0"))
PLUG = ENV("EDGED_ZIGBEE_PLUG")  # IEEE address of a paired mains device with an on/off cluster (a plug, a lamp)
REMOTE = ENV("EDGED_ZIGBEE_REMOTE")  # IEEE address of a paired remote or wall switch
OTA_DIR = ENV("EDGED_ZIGBEE_OTA_DIR")  # a folder holding a newer image for EDGED_ZIGBEE_OTA_DEVICE
OTA_DEVICE = ENV("EDGED_ZIGBEE_OTA_DEVICE")
MANUFACTURER_DEVICE = ENV("EDGED_ZIGBEE_QUIRK_DEVICE")  # a paired Tuya TS0601 or Xiaomi/Aqara sensor
PAIRED = "pair the device first (EDGED_ZIGBEE_JOIN) and keep EDGED_ZIGBEE_STATE"


@pytest.fixture
def state_dir(tmp_path) -> Path:
    """EDGED_ZIGBEE_STATE keeps the database between runs (paired devices stay paired)."""
    return Path(ENV("EDGED_ZIGBEE_STATE") or tmp_path / "zigbee")


def make(hub: Hub, state_dir: Path, **settings: Any) -> ZigbeeAdapter:
    serial = {"path": PORT, "baudrate": int(ENV("EDGED_ZIGBEE_BAUD", "115200"))}
    if ENV("EDGED_ZIGBEE_FLOW_CONTROL"):
        serial["flow_control"] = ENV("EDGED_ZIGBEE_FLOW_CONTROL")
    config = ZigbeeConfig.model_validate({"type": "zigbee", "name": "zigbee", "radio": RADIO, "serial": serial, **settings})
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


@pytest.mark.skipif(not PLUG, reason=f"set EDGED_ZIGBEE_PLUG to a paired mains device; {PAIRED}")
async def test_an_unplugged_mains_device_is_found_by_pings_and_comes_back(state_dir):
    """Active availability on real hardware: pinged after 10 s of silence, offline after 2
    unanswered pings (so within about 30 s, not hours), online at its next answer."""
    hub = Hub()
    adapter = make(hub, state_dir, silence={"ping_after": "10s", "failed_pings": 2})
    device_id = adapter.device_id(PLUG.lower())
    task = await started(adapter)
    try:
        await until(hub, task, lambda: device_id in hub.devices and hub.devices[device_id].online)
        print(f"\nunplug {device_id} now")
        await until(hub, task, lambda: not hub.devices[device_id].online, timeout=120)
        print(f"plug {device_id} in again")
        await until(hub, task, lambda: hub.devices[device_id].online, timeout=120)
    finally:
        await stopped(task)


@pytest.mark.skipif(not PLUG, reason=f"set EDGED_ZIGBEE_PLUG to a paired mains device; {PAIRED}")
async def test_a_group_switches_its_member_with_one_command(state_dir):
    hub = Hub()
    adapter = make(hub, state_dir)
    plug = adapter.device_id(PLUG.lower())
    task = await started(adapter)
    try:
        await until(hub, task, lambda: plug in hub.devices and hub.devices[plug].online)
        group = adapter.create_group("edged hwtest")
        try:
            await adapter.add_to_group(group.group_id, plug)
            group_device = adapter.device_id(f"group/0x{group.group_id:04X}")
            for value in (True, False):
                result = await hub.execute(Command(group_device, "on", value, Origin.API))
                assert result.status is CommandStatus.OK, result.reason
                await until(hub, task, lambda v=value: (r := hub.value(plug, "on")) is not None and r.value is v)
        finally:
            await adapter.delete_group(group.group_id)
    finally:
        await stopped(task)


@pytest.mark.skipif(not (PLUG and REMOTE), reason=f"set EDGED_ZIGBEE_PLUG and EDGED_ZIGBEE_REMOTE; {PAIRED}")
async def test_a_bound_remote_switches_the_plug_without_the_gateway(state_dir):
    hub = Hub()
    adapter = make(hub, state_dir)
    plug, remote = adapter.device_id(PLUG.lower()), adapter.device_id(REMOTE.lower())
    task = await started(adapter)
    try:
        await until(hub, task, lambda: plug in hub.devices and remote in hub.devices)
        link = adapter.link(remote, plug, "on_off")
        await adapter.bind(link)
        try:
            before = hub.value(plug, "on")
            print(f"\npress {remote}'s on or off button now")
            await until(hub, task, lambda: (r := hub.value(plug, "on")) is not None and r is not before, timeout=120)
        finally:
            await adapter.unbind(link)
    finally:
        await stopped(task)


@pytest.mark.skipif(not (OTA_DIR and OTA_DEVICE), reason="set EDGED_ZIGBEE_OTA_DIR and EDGED_ZIGBEE_OTA_DEVICE")
async def test_a_device_takes_an_image_from_a_local_folder(state_dir):
    """A real update: minutes for a router, longer for a sleepy device (wake it first)."""
    hub = Hub()
    adapter = make(hub, state_dir, ota={"folder": OTA_DIR})
    device_id = adapter.device_id(OTA_DEVICE.lower())
    task = await started(adapter)
    try:
        await until(hub, task, lambda: device_id in hub.devices)
        started_update = await adapter.firmware.start(device_id)
        assert started_update["to_version"] > started_update["from_version"]
        await until(hub, task, lambda: device_id not in adapter.firmware.progress, timeout=3600)
        (described,) = [d for d in await adapter.firmware.status() if d["device"] == device_id]
        assert described["current_version"] == started_update["to_version"], described
    finally:
        await stopped(task)


@pytest.mark.skipif(not MANUFACTURER_DEVICE, reason=f"set EDGED_ZIGBEE_QUIRK_DEVICE to a paired Tuya or Aqara sensor; {PAIRED}")
async def test_a_manufacturer_cluster_device_reports_values(state_dir):
    """A Tuya TS0601 or Xiaomi/Aqara sensor from quirks.yaml: its data points become readings."""
    hub = Hub()
    adapter = make(hub, state_dir)
    device_id = adapter.device_id(MANUFACTURER_DEVICE.lower())
    task = await started(adapter)
    try:
        await until(hub, task, lambda: device_id in hub.devices and any(
            (r := hub.value(device_id, key)) is not None and r.quality is Quality.GOOD for key in hub.devices[device_id].points
        ), timeout=600)  # sensors report every few minutes
        print({key: r.value for key in hub.devices[device_id].points if (r := hub.value(device_id, key)) is not None})
    finally:
        await stopped(task)

