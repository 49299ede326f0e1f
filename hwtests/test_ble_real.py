"""The BLE adapter against a real Bluetooth adapter (BlueZ) and a real sensor.

Skipped unless EDGED_BLE_ADDRESS names a device in range; see hwtests/README.md.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from edged.adapters.ble.adapter import BleAdapter
from edged.adapters.ble.config import BleConfig
from edged.hub import Hub
from edged.model import Quality

ADDRESS = os.environ.get("EDGED_BLE_ADDRESS")
pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not ADDRESS, reason="set EDGED_BLE_ADDRESS to a BLE sensor in range"),
]
TIMEOUT = float(os.environ.get("EDGED_BLE_TIMEOUT", "90"))


def config(**extra) -> BleConfig:
    base: dict = {"type": "ble", "name": "ble", "addresses": [ADDRESS]}
    if os.environ.get("EDGED_BLE_ADAPTER"):
        base["adapter"] = os.environ["EDGED_BLE_ADAPTER"]
    if os.environ.get("EDGED_BLE_BINDKEY"):
        base["keys"] = {ADDRESS: os.environ["EDGED_BLE_BINDKEY"]}
    return BleConfig.model_validate({**base, **extra})


async def run_adapter(hub: Hub, adapter: BleAdapter, predicate) -> None:
    """Run ``adapter`` until ``predicate()`` holds (checked on every Hub change) or it fails to start."""
    changed = asyncio.Event()
    hub.subscribe(lambda batch: changed.set())
    hub.subscribe_events(lambda event: changed.set())
    task = asyncio.create_task(adapter.run())
    task.add_done_callback(lambda _: changed.set())
    try:
        async with asyncio.timeout(TIMEOUT):
            while not (task.done() or predicate()):
                changed.clear()
                await changed.wait()
        if task.done():
            task.result()  # raises the start-up error
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("scanning", ["active", "passive"])
async def test_advertisements_of_a_real_sensor_become_readings(tmp_path, scanning):
    """A BTHome, Ruuvi or iBeacon sensor at EDGED_BLE_ADDRESS reports good values."""
    hub = Hub()
    adapter = BleAdapter(config(scanning=scanning), hub, tmp_path)

    def reported() -> bool:
        return any(
            d.online and any((r := hub.value(d.id, k)) is not None and r.quality is Quality.GOOD for k in d.points)
            for d in hub.adapter_devices("ble")
        )

    await run_adapter(hub, adapter, reported)
    assert reported()
    assert not any(d.online for d in hub.adapter_devices("ble"))


@pytest.mark.skipif(not os.environ.get("EDGED_BLE_GATT_UUID"), reason="set EDGED_BLE_GATT_UUID to a readable characteristic")
async def test_gatt_read_of_a_real_device(tmp_path):
    """The device at EDGED_BLE_ADDRESS is connected and EDGED_BLE_GATT_UUID read with EDGED_BLE_GATT_DECODER."""
    hub = Hub()
    char = {"key": "value", "uuid": os.environ["EDGED_BLE_GATT_UUID"],
            "decoder": os.environ.get("EDGED_BLE_GATT_DECODER", "raw"), "interval": "5s"}
    adapter = BleAdapter(config(gatt=[{"id": "dut", "address": ADDRESS, "characteristics": [char]}]), hub, tmp_path)
    await run_adapter(hub, adapter, lambda: (r := hub.value("ble/dut", "value")) is not None and r.quality is Quality.GOOD)
    assert hub.value("ble/dut", "value").quality is Quality.GOOD
