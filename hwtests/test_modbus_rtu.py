"""The Modbus adapter against a real RS-485 device.

Skipped unless EDGED_MODBUS_RTU_PORT names the serial port the bus hangs
on; see "Modbus RTU (RS-485)" in hwtests/README.md.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from edged.adapters.modbus.adapter import ModbusAdapter
from edged.adapters.modbus.config import ModbusConfig
from edged.hub import Hub
from edged.model import Command, Origin, Quality

PORT = os.environ.get("EDGED_MODBUS_RTU_PORT")
pytestmark = [
    pytest.mark.hardware,
    pytest.mark.skipif(not PORT, reason="set EDGED_MODBUS_RTU_PORT to the serial port of an RS-485 bus"),
]
ENV = os.environ.get
UNIT = int(ENV("EDGED_MODBUS_RTU_UNIT", "1"))
TABLE = ENV("EDGED_MODBUS_RTU_TABLE", "holding")
ADDRESS = int(ENV("EDGED_MODBUS_RTU_ADDRESS", "0"))
COUNT = int(ENV("EDGED_MODBUS_RTU_COUNT", "1"))
WRITE_ADDRESS = ENV("EDGED_MODBUS_RTU_WRITE_ADDRESS")
TIMEOUT = float(ENV("EDGED_MODBUS_RTU_TIMEOUT", "30"))


def config() -> ModbusConfig:
    points = [{"key": f"r{ADDRESS + i}", "table": TABLE, "address": ADDRESS + i} for i in range(COUNT)]
    if WRITE_ADDRESS is not None:
        points.append({"key": "w", "address": int(WRITE_ADDRESS), "writable": True})
    connection = {
        "transport": "rtu",
        "port": PORT,
        "baudrate": int(ENV("EDGED_MODBUS_RTU_BAUD", "9600")),
        "parity": ENV("EDGED_MODBUS_RTU_PARITY", "E"),
        "stopbits": int(ENV("EDGED_MODBUS_RTU_STOPBITS", "1")),
        "timeout": float(ENV("EDGED_MODBUS_RTU_REQUEST_TIMEOUT", "1")),
        "devices": [{"id": "dut", "unit_id": UNIT, "interval": 1, "points": points}],
    }
    if ENV("EDGED_MODBUS_RTU_RS485") == "1":
        connection["rs485"] = {"enabled": True}
    return ModbusConfig.model_validate({"type": "modbus", "name": "rtu", "connections": [connection]})


async def wait(hub: Hub, task: asyncio.Task[None], predicate) -> None:
    changed = asyncio.Event()
    hub.subscribe(lambda batch: changed.set())
    hub.subscribe_events(lambda event: changed.set())
    task.add_done_callback(lambda _: changed.set())
    async with asyncio.timeout(TIMEOUT):
        while not (task.done() or predicate()):
            changed.clear()
            await changed.wait()
    if task.done():
        task.result()


async def test_real_device_reports_and_takes_a_write(tmp_path):
    """The device comes online with good values; with EDGED_MODBUS_RTU_WRITE_ADDRESS, the value read
    there is written back unchanged (FC 6) and reported again."""
    hub = Hub()
    adapter = ModbusAdapter(config(), hub, tmp_path)
    task = asyncio.create_task(adapter.run())
    try:
        keys = [f"r{ADDRESS + i}" for i in range(COUNT)] + (["w"] if WRITE_ADDRESS is not None else [])

        def reported() -> bool:
            device = hub.devices.get("rtu/dut")
            return bool(device and device.online) and all(
                (r := hub.value("rtu/dut", k)) is not None and r.quality is Quality.GOOD for k in keys
            )

        await wait(hub, task, reported)
        if WRITE_ADDRESS is not None:
            current = hub.value("rtu/dut", "w").value
            result = await hub.execute(Command("rtu/dut", "w", current, Origin.API))
            assert result.ok, result.reason
            assert hub.value("rtu/dut", "w").value == current
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert all(not d.online for d in hub.adapter_devices("rtu"))
