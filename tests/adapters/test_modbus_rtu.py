"""The Modbus adapter over RTU: pymodbus's serial server on one end of a socat
pty pair, the adapter on the other."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from edged.adapters.modbus.adapter import ModbusAdapter
from edged.adapters.modbus.config import ModbusConfig
from edged.model import Command, Origin, Quality
from tests.adapters.modbus_server import Server
from tests.adapters.test_modbus import ORDERS, TYPES, good, online, wire

pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat for a pty pair")
BAUD = 115200


@pytest.fixture
async def ptys():
    """Two linked pseudo-terminals, as a null-modem cable between two serial ports."""
    proc = await asyncio.create_subprocess_exec(
        "socat", "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0", stderr=asyncio.subprocess.PIPE,
    )
    names: list[str] = []
    try:
        async with asyncio.timeout(10):
            while len(names) < 2:
                line = (await proc.stderr.readline()).decode()
                if match := re.search(r"PTY is (\S+)", line):
                    names.append(match.group(1))
        yield names
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture
async def rtu_server(ptys):
    server = Server(units=(1, 2))
    await server.start_rtu(ptys[0], BAUD)
    yield server, ptys[1]
    await server.stop()


def rtu_adapter(hub, tmp_path, port: str, devices: list[dict], **connection) -> ModbusAdapter:
    config = ModbusConfig.model_validate(
        {"type": "modbus", "name": "rtu", "connections": [
            {"transport": "rtu", "port": port, "baudrate": BAUD, "parity": "N",  # a pty refuses parity settings
             "timeout": 0.3, "devices": devices, **connection},
        ]}
    )
    return ModbusAdapter(config, hub, tmp_path)


async def test_types_and_orders_over_rtu(rtu_server, hub, watch, running, tmp_path):
    server, port = rtu_server
    points, expected, address = [], {}, 0
    for name, code, value in TYPES:
        for order in ORDERS:
            regs = wire(code, value, order)
            await server.set(1, "holding", address, regs)
            points.append({"key": f"{name}_{order}", "address": address, "type": name, "order": order,
                           "writable": True})
            expected[f"{name}_{order}"] = value
            address += len(regs)
    running(rtu_adapter(hub, tmp_path, port, [{"id": "d", "unit_id": 1, "interval": 0.1, "points": points}]))
    await watch.until(lambda: all(hub.value("rtu/d", k) is not None for k in expected))
    assert {k: hub.value("rtu/d", k).value for k in expected} == expected
    assert len(server.reads(1)) >= 1 and server.reads(1)[0].count == address  # one read for all 80 registers

    await server.set(1, "holding", 0, [0] * address)
    for key, value in expected.items():
        assert (await hub.execute(Command("rtu/d", key, value, Origin.API))).ok
    assert await server.get(1, "holding", 0, address) == [r for n, c, v in TYPES for o in ORDERS for r in wire(c, v, o)]


async def test_silent_unit_goes_offline_while_the_line_keeps_working(rtu_server, hub, watch, running, tmp_path):
    server, port = rtu_server
    await server.set(2, "input", 0, [5])
    devices = [
        {"id": "alive", "unit_id": 2, "interval": 0.05, "points": [{"key": "v", "table": "input", "address": 0}]},
        {"id": "gone", "unit_id": 9, "interval": 0.05, "fail_after": 2, "points": [{"key": "v", "address": 0}]},
    ]
    running(rtu_adapter(hub, tmp_path, port, devices))
    await watch.until(lambda: good(hub, "rtu/alive", "v", 5))
    # unit 9 does not exist: its requests time out; it is flagged bad, never online, and unit 2 is unaffected
    await watch.until(lambda: (r := hub.value("rtu/gone", "v")) is not None and r.quality is Quality.BAD)
    assert not online(hub, "rtu/gone")
    await server.set(2, "input", 0, [6])
    await watch.until(lambda: good(hub, "rtu/alive", "v", 6))
    assert online(hub, "rtu/alive")


async def test_port_without_rs485_mode_is_reported_not_fatal(rtu_server, hub, watch, running, tmp_path, caplog):
    _, port = rtu_server
    devices = [{"id": "d", "unit_id": 1, "interval": 0.05, "points": [{"key": "v", "address": 0}]}]
    task = running(rtu_adapter(hub, tmp_path, port, devices, rs485={"enabled": True}))
    # a pty has no RS-485 mode: the connection is refused with the reason, retried, and the point is bad
    await watch.until(lambda: (r := hub.value("rtu/d", "v")) is not None and r.quality is Quality.BAD)
    assert any("cannot enable RS-485 mode" in r.getMessage() for r in caplog.records)
    assert not task.done()


async def test_crc_errors_mark_bad_then_offline_then_recover(rtu_server, hub, watch, running, tmp_path):
    server, port = rtu_server
    await server.set(1, "holding", 0, [21])
    devices = [{"id": "d", "unit_id": 1, "interval": 0.05, "fail_after": 2, "points": [{"key": "v", "address": 0}]}]
    running(rtu_adapter(hub, tmp_path, port, devices))
    await watch.until(lambda: good(hub, "rtu/d", "v", 21) and online(hub, "rtu/d"))
    server.corrupt = True  # frames arrive, but with a wrong CRC: pymodbus drops them; the request times out
    await watch.until(lambda: hub.value("rtu/d", "v").quality is Quality.BAD)
    await watch.until(lambda: not online(hub, "rtu/d"))
    server.corrupt = False
    await server.set(1, "holding", 0, [22])
    await watch.until(lambda: good(hub, "rtu/d", "v", 22) and online(hub, "rtu/d"))
