"""OPC UA faults as a person sees them, against a real asyncua server: the reason in the API, a
readable log (no traceback, no library error for a fault edged reports itself)."""

from __future__ import annotations

from edged.adapters.opcua.adapter import OpcuaAdapter
from edged.status.views import devices_json, status_json
from edged.view import GatewayView
from tests.adapters.test_opcua import NS, make_config
from tests.gateway_log import GatewayLog, gateway_log_fixture  # noqa: F401 - a fixture


def boiler(view: GatewayView) -> dict:
    return next(device for device in devices_json(view) if device["id"] == "plc/boiler")


def clean(log: GatewayLog) -> None:
    assert log.tracebacks() == []
    assert log.library_errors() == []
    assert log.frame_dumps() == []


async def test_a_node_the_server_does_not_have_is_the_devices_problem(
    plant, hub, watch, running, tmp_path, gateway_log: GatewayLog
):
    config = make_config(plant.endpoint)
    devices = [d.model_dump() for d in config.devices]
    devices[0]["nodes"].append({"key": "ghost", "node": f"ns={NS};s=Boiler.Ghost"})
    adapter = OpcuaAdapter(make_config(plant.endpoint, devices=devices), hub, tmp_path)
    view = GatewayView("gw", hub, {"plc": adapter})
    running(adapter)
    await watch.until(lambda: (d := hub.devices.get("plc/boiler")) is not None and d.online and d.problem is not None)
    device = boiler(view)
    assert device["problem"]["reason"] == "ghost: OPC UA BadNodeIdUnknown"
    assert device["problem"]["count"] == 1
    await plant.set("Temperature", 41.0)
    await watch.until(lambda: (r := hub.value("plc/boiler", "temperature")) is not None and r.value == 41.0)
    assert boiler(view)["problem"]["reason"] == "ghost: OPC UA BadNodeIdUnknown", "the node stays bad this session"
    assert boiler(view)["last_seen"] is not None
    assert status_json(view)["adapters"]["plc"]["problem"] is None
    clean(gateway_log)
    assert gateway_log.about("plc/boiler") == [
        f"ghost (ns={NS};s=Boiler.Ghost): cannot monitor: BadNodeIdUnknown", "device online",
    ]


async def test_a_server_gone_is_the_adapters_and_its_devices_problem(
    plant, hub, watch, running, tmp_path, gateway_log: GatewayLog
):
    adapter = OpcuaAdapter(make_config(plant.endpoint), hub, tmp_path)
    view = GatewayView("gw", hub, {"plc": adapter})
    running(adapter)
    await watch.until(lambda: (d := hub.devices.get("plc/boiler")) is not None and d.online)
    assert boiler(view)["problem"] is None
    await plant.stop()
    await gateway_log.until(lambda: adapter.last_problem is not None and adapter.last_problem.count >= 2)
    status = status_json(view)["adapters"]["plc"]
    reason = status["problem"]["reason"]
    assert reason == f"connection refused by {plant.endpoint}"
    assert status["problems"] == [f"adapter plc: {reason}"]
    device = boiler(view)
    assert not device["online"]
    assert device["problem"]["reason"] == reason
    assert device["problem"]["count"] >= 2
    clean(gateway_log)
    assert f"device offline after 1 failures: lost the connection to {plant.endpoint}" in gateway_log.about("plc/boiler")

    await plant.start()
    await watch.until(lambda: hub.devices["plc/boiler"].online, timeout=15)
    assert boiler(view)["problem"] is None
    assert status_json(view)["adapters"]["plc"]["problem"] is None
    clean(gateway_log)
