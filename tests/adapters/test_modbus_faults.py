"""Modbus faults as a person sees them: the reason in the API, one readable log line per fault.

Against pymodbus's own server: one unit answers every request with
exception 11, one never answers, one is fine.
"""

from __future__ import annotations

import pytest
from pymodbus.constants import ExcCodes

from edged.adapters.modbus.adapter import ModbusAdapter
from edged.adapters.modbus.config import ModbusConfig
from edged.status.views import devices_json, status_json
from edged.view import GatewayView
from tests.adapters.modbus_server import Server
from tests.adapters.test_modbus import online
from tests.gateway_log import GatewayLog, capture, gateway_log_fixture  # noqa: F401 - a fixture

REFUSES, SILENT, FINE = 1, 3, 2


@pytest.fixture
async def server():
    server = Server(units=(REFUSES, SILENT, FINE))
    server.silent.add(SILENT)
    await server.start_tcp()
    yield server
    await server.stop()


def modbus(port: int, hub, tmp_path) -> ModbusAdapter:
    point = [{"key": "x", "address": 0}]
    devices = [
        {"id": "refuses", "unit_id": REFUSES, "interval": 0.05, "fail_after": 2, "points": point},
        {"id": "silent", "unit_id": SILENT, "interval": 0.05, "fail_after": 2, "points": point},
        {"id": "fine", "unit_id": FINE, "interval": 0.05, "points": point},
    ]
    connection = {"transport": "tcp", "host": "127.0.0.1", "port": port, "timeout": 0.2, "devices": devices}
    config = ModbusConfig.model_validate({"type": "modbus", "name": "mb", "connections": [connection]})
    return ModbusAdapter(config, hub, tmp_path)


def by_id(view: GatewayView) -> dict[str, dict]:
    return {device["id"]: device for device in devices_json(view)}


async def test_each_failing_unit_says_why_and_the_log_stays_readable(
    server, hub, watch, running, tmp_path, gateway_log: GatewayLog
):
    await server.set(REFUSES, "holding", 0, [7])
    server.failing[REFUSES] = ExcCodes.GATEWAY_NO_RESPONSE
    adapter = modbus(server.port, hub, tmp_path)
    view = GatewayView("gw", hub, {"mb": adapter})
    server.on_request = watch.poke
    running(adapter)

    def failed_twice(device: str) -> bool:
        known = hub.devices.get(device)
        return known is not None and known.problem is not None and known.problem.count >= 2

    await watch.until(lambda: failed_twice("mb/refuses") and failed_twice("mb/silent") and hub.devices["mb/fine"].online)
    devices = by_id(view)
    assert devices["mb/refuses"]["problem"]["reason"] == "exception 11: gateway target failed to respond"
    assert devices["mb/silent"]["problem"]["reason"] == "no answer within 0.2 s"
    assert devices["mb/silent"]["problem"]["count"] >= 2
    assert devices["mb/silent"]["problem"]["since"] <= devices["mb/silent"]["problem"]["last"]
    assert devices["mb/fine"]["problem"] is None
    # Never heard: no last_seen, though their points hold bad readings.
    assert devices["mb/refuses"]["last_seen"] is None and devices["mb/silent"]["last_seen"] is None
    assert devices["mb/fine"]["last_seen"] is not None
    assert status_json(view)["adapters"]["mb"]["problem"] is None  # the connection itself is fine

    assert gateway_log.tracebacks() == []
    assert gateway_log.library_errors() == []
    assert gateway_log.frame_dumps() == []
    assert gateway_log.about("mb/silent") == ["read holding 0+1: no answer within 0.2 s"]
    assert gateway_log.about("mb/refuses") == ["read holding 0+1: exception 11: gateway target failed to respond"]
    assert all("mb/" not in message for message in gateway_log.about("mb/silent")), "named once"

    # The unit recovers: its problem is gone, and it is seen.
    del server.failing[REFUSES]
    await watch.until(lambda: online(hub, "mb/refuses"))
    devices = by_id(view)
    assert devices["mb/refuses"]["problem"] is None
    assert devices["mb/refuses"]["last_seen"] is not None


async def test_a_library_at_debug_shows_its_own_lines_and_frames(server, hub, watch, running, tmp_path, gateway_log):
    log = capture(log_levels={"pymodbus": "debug"})
    server.on_request = watch.poke
    running(modbus(server.port, hub, tmp_path))
    await watch.until(lambda: "mb/silent" in hub.devices and hub.devices["mb/silent"].problem is not None)
    lines = log.lines()
    assert any(level == "DEBUG" and logger.startswith("pymodbus") and "No response received" in message
               for level, logger, message in lines), "the library's error about the device, at debug"  # fmt: skip
    assert any(level == "DEBUG" and "send: 0x" in message for level, logger, message in lines), "its frames"
    assert log.library_errors() == []


async def test_a_connection_that_cannot_be_made_is_the_adapters_problem(server, hub, watch, running, tmp_path, gateway_log):
    adapter = modbus(server.port, hub, tmp_path)
    view = GatewayView("gw", hub, {"mb": adapter})
    running(adapter)
    await watch.until(lambda: online(hub, "mb/fine"))
    port = server.port
    await server.stop()
    await watch.until(lambda: not online(hub, "mb/fine"))
    await gateway_log.until(lambda: adapter.last_problem is not None and adapter.last_problem.reason.startswith("cannot"))
    problem = status_json(view)["adapters"]["mb"]["problem"]
    assert problem["reason"] == f"cannot connect to tcp://127.0.0.1:{port}"
    assert by_id(view)["mb/fine"]["problem"]["reason"] == f"tcp://127.0.0.1:{port} is not connected"
    assert gateway_log.tracebacks() == [] and gateway_log.library_errors() == [] and gateway_log.frame_dumps() == []

    revived = Server(units=(FINE,))
    await revived.start_tcp(port)
    try:
        await watch.until(lambda: online(hub, "mb/fine"), timeout=15)
        assert status_json(view)["adapters"]["mb"]["problem"] is None
        assert by_id(view)["mb/fine"]["problem"] is None
    finally:
        await revived.stop()


async def test_one_missing_register_is_the_problem_of_its_point_while_the_rest_is_read(
    server, hub, watch, running, tmp_path, gateway_log
):
    points = [{"key": f"r{a}", "address": a} for a in range(4)]
    server.holes[FINE] = {2}
    config = ModbusConfig.model_validate({"type": "modbus", "name": "mb", "connections": [{
        "transport": "tcp", "host": "127.0.0.1", "port": server.port, "timeout": 0.2,
        "devices": [{"id": "d", "unit_id": FINE, "interval": 0.02, "points": points}]}]})  # fmt: skip
    server.on_request = watch.poke
    running(ModbusAdapter(config, hub, tmp_path))
    await watch.until(lambda: online(hub, "mb/d") and (p := hub.devices["mb/d"].problem) is not None and p.count >= 3)
    problem = hub.devices["mb/d"].problem
    assert (problem.reason, problem.point) == ("r2: exception 2: illegal data address", "r2")
    assert hub.devices["mb/d"].last_seen is not None
    del server.holes[FINE]
    await watch.until(lambda: hub.devices["mb/d"].problem is None)
    assert gateway_log.library_errors() == [] and gateway_log.tracebacks() == []
