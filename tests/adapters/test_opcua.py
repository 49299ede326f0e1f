"""The OPC UA adapter against a real asyncua server on a loopback port."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator

import pytest
from asyncua import ua

from edged.adapters.opcua.adapter import OpcuaAdapter
from edged.adapters.opcua.config import OpcuaConfig
from edged.model import Command, CommandStatus, Origin, Quality
from tests.adapters import conformance
from tests.adapters.opcua_server import NAMESPACE, FreezableProxy, PlantServer, RetryLog, free_port

NS = 2  # the first namespace a server registers after its own


def make_config(endpoint: str, **overrides: object) -> OpcuaConfig:
    data = {
        "type": "opcua",
        "name": "plc",
        "endpoint": endpoint,
        "keepalive": 0.5,
        "timeout": 2,
        "reconnect": {"initial": 0.2, "maximum": 1},
        "subscription": {"publishing_interval": 0.05, "sampling_interval": 0.02},
        "devices": [
            {
                "id": "boiler",
                "nodes": [
                    {"key": "temperature", "node": f"ns={NS};s=Boiler.Temperature", "unit": "Cel"},
                    {"key": "setpoint", "path": f"0:Objects/{NS}:Boiler/{NS}:Setpoint", "writable": True},
                    {"key": "level", "node": f"ns={NS};s=Boiler.Level", "type": "int", "writable": True},
                    {"key": "pump", "node": f"ns={NS};s=Boiler.Pump", "type": "bool", "writable": True},
                    {"key": "mode", "node": f"ns={NS};s=Boiler.Mode", "type": "str", "writable": True},
                    {"key": "counter", "node": f"ns={NS};s=Boiler.Counter", "type": "int", "poll": 0.05},
                ],
            }
        ],
    }
    data.update(overrides)
    return OpcuaConfig.model_validate(data)


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    server = PlantServer(free_port())
    await server.start()
    assert await server.server.get_namespace_index(NAMESPACE) == NS
    yield server
    await server.stop()


@pytest.fixture
async def adapter(plant, hub, watch, running, tmp_path) -> OpcuaAdapter:
    adapter = OpcuaAdapter(make_config(plant.endpoint), hub, tmp_path)
    adapter.task = running(adapter)
    await watch.until(lambda: (d := hub.devices.get("plc/boiler")) is not None and d.online)
    return adapter


async def test_conformance(plant, hub, watch, running, tmp_path):
    adapter = OpcuaAdapter(make_config(plant.endpoint), hub, tmp_path)
    task = running(adapter)
    await conformance.check_devices_report(adapter, hub, watch)
    await conformance.check_read_only_rejected(hub, "plc/boiler", "temperature")
    await conformance.check_write_round_trip(hub, watch, "plc/boiler", "setpoint", 23.5)
    await conformance.check_stop_marks_offline(adapter, hub, task)


async def test_subscription_delivers_changes_with_source_timestamp(plant, adapter, hub, watch):
    stamp = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    node = plant.nodes["Temperature"]
    await node.write_value(ua.DataValue(ua.Variant(25.5, ua.VariantType.Double), SourceTimestamp=stamp))
    reading = await watch.until(lambda: (r := hub.value("plc/boiler", "temperature")) and r.value == 25.5 and r)
    assert reading.quality is Quality.GOOD
    assert reading.ts == stamp.timestamp()


async def test_one_publish_is_one_batch(plant, adapter, hub, watch):
    batches: list[list[str]] = []
    hub.subscribe(lambda batch: batches.append([r.key for r in batch]))
    # Written in one go on the server, the changes land in one Publish response.
    await plant.server.write_attribute_value(
        plant.nodes["Temperature"].nodeid, ua.DataValue(ua.Variant(31.0, ua.VariantType.Double))
    )
    await plant.server.write_attribute_value(
        plant.nodes["Pump"].nodeid, ua.DataValue(ua.Variant(True, ua.VariantType.Boolean))
    )
    await watch.until(lambda: hub.value("plc/boiler", "pump").value is True)
    assert any({"temperature", "pump"} <= set(keys) for keys in batches), batches


async def test_polled_node_is_read(plant, adapter, hub, watch):
    await plant.set("Counter", 42)
    reading = await watch.until(lambda: (r := hub.value("plc/boiler", "counter")) and r.value == 42 and r)
    assert reading.quality is Quality.GOOD


async def test_bad_status_code_is_bad_quality(plant, adapter, hub, watch):
    await watch.until(lambda: hub.value("plc/boiler", "temperature"))
    await plant.set("Temperature", 20.0, ua.StatusCodes.BadSensorFailure)
    reading = await watch.until(lambda: (r := hub.value("plc/boiler", "temperature")) and r.quality is Quality.BAD and r)
    assert reading.value is None
    await plant.set("Temperature", 20.0, ua.StatusCodes.UncertainLastUsableValue)
    reading = await watch.until(
        lambda: (r := hub.value("plc/boiler", "temperature")) and r.quality is Quality.UNCERTAIN and r
    )
    assert reading.value == 20.0


async def test_polled_bad_status_is_bad_quality(plant, adapter, hub, watch):
    await plant.set("Counter", 5, ua.StatusCodes.BadCommunicationError)
    await watch.until(lambda: (r := hub.value("plc/boiler", "counter")) and r.quality is Quality.BAD)


async def test_write_is_coerced_to_the_node_data_type(plant, adapter, hub, watch):
    result = await hub.execute(Command("plc/boiler", "level", 12.0, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    data_value = await plant.nodes["Level"].read_data_value()
    assert data_value.Value.VariantType is ua.VariantType.Byte
    assert data_value.Value.Value == 12
    await watch.until(lambda: hub.value("plc/boiler", "level").value == 12)

    result = await hub.execute(Command("plc/boiler", "pump", "on", Origin.RULE))
    assert result.status is CommandStatus.OK, result.reason
    assert await plant.get("Pump") is True

    result = await hub.execute(Command("plc/boiler", "mode", "manual", Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    assert await plant.get("Mode") == "manual"


async def test_write_that_does_not_fit_is_rejected_with_reason(plant, adapter, hub):
    result = await hub.execute(Command("plc/boiler", "level", 300, Origin.API))
    assert result.status is CommandStatus.FAILED
    assert "out of range for Byte (0..255)" in result.reason
    result = await hub.execute(Command("plc/boiler", "setpoint", 1e39, Origin.API))
    assert result.status is CommandStatus.FAILED
    assert "out of range for Float" in result.reason
    result = await hub.execute(Command("plc/boiler", "level", 2.5, Origin.API))
    assert result.status is not CommandStatus.OK
    assert await plant.get("Level") == 7  # nothing was written


async def test_server_refusal_is_reported(plant, adapter, hub):
    await plant.nodes["Setpoint"].set_read_only()
    result = await hub.execute(Command("plc/boiler", "setpoint", 22.0, Origin.API))
    assert result.status is CommandStatus.FAILED
    assert "BadUserAccessDenied" in result.reason or "BadNotWritable" in result.reason


async def test_unknown_node_is_bad_and_the_rest_flows(plant, hub, watch, running, tmp_path):
    config = make_config(plant.endpoint)
    devices = [d.model_dump() for d in config.devices]
    devices[0]["nodes"].append({"key": "ghost", "node": f"ns={NS};s=Boiler.Ghost"})
    devices[0]["nodes"].append({"key": "lost", "path": f"0:Objects/{NS}:Boiler/{NS}:Lost"})
    running(OpcuaAdapter(make_config(plant.endpoint, devices=devices), hub, tmp_path))
    await watch.until(lambda: (r := hub.value("plc/boiler", "ghost")) and r.quality is Quality.BAD)
    await watch.until(lambda: (r := hub.value("plc/boiler", "lost")) and r.quality is Quality.BAD)
    await plant.set("Temperature", 40.0)
    await watch.until(lambda: (r := hub.value("plc/boiler", "temperature")) and r.value == 40.0)


async def test_values_flow_again_after_server_restart(plant, adapter, hub, watch):
    await plant.set("Temperature", 30.0)
    await watch.until(lambda: hub.value("plc/boiler", "temperature").value == 30.0)
    await plant.stop()
    await watch.until(lambda: not hub.devices["plc/boiler"].online, timeout=10)

    await plant.start()  # a new server process would look the same: fresh address space, same port
    await watch.until(lambda: hub.devices["plc/boiler"].online, timeout=10)
    await plant.set("Temperature", 33.0)
    await plant.set("Counter", 9)
    await watch.until(lambda: hub.value("plc/boiler", "temperature").value == 33.0, timeout=10)
    await watch.until(lambda: hub.value("plc/boiler", "counter").value == 9, timeout=10)
    assert adapter.reconnects_total >= 1


async def test_silently_dead_session_is_noticed_within_the_keepalive_bound(plant, hub, watch, running, tmp_path):
    proxy = FreezableProxy(plant.port)
    await proxy.start()
    try:
        endpoint = f"opc.tcp://127.0.0.1:{proxy.port}/edged/"
        running(OpcuaAdapter(make_config(endpoint, keepalive=0.5, timeout=1), hub, tmp_path))
        await watch.until(lambda: (d := hub.devices.get("plc/boiler")) is not None and d.online)
        loop = asyncio.get_running_loop()
        frozen_at = loop.time()
        proxy.freeze()  # no FIN, no RST: only the keep-alive probe can tell
        await watch.until(lambda: not hub.devices["plc/boiler"].online, timeout=5)
        assert loop.time() - frozen_at < 2 * 0.5 + 1  # probe interval + probe time, plus scheduling slack
        # The adapter reconnects through a fresh connection and recreates its subscription.
        await watch.until(lambda: hub.devices["plc/boiler"].online, timeout=10)
        await plant.set("Temperature", 55.0)
        await watch.until(lambda: hub.value("plc/boiler", "temperature").value == 55.0)
    finally:
        await proxy.stop()


@pytest.fixture
async def guarded_plant() -> AsyncIterator[PlantServer]:
    server = PlantServer(free_port(), users={"operator": "s3cret"})
    await server.start()
    yield server
    await server.stop()


async def test_username_and_password_from_the_environment(guarded_plant, hub, watch, running, tmp_path, monkeypatch):
    monkeypatch.setenv("PLC_PASSWORD", "s3cret")
    config = make_config(guarded_plant.endpoint, username="operator", password={"env": "PLC_PASSWORD"})
    running(OpcuaAdapter(config, hub, tmp_path))
    await guarded_plant.set("Temperature", 61.0)
    await watch.until(lambda: (r := hub.value("plc/boiler", "temperature")) and r.value == 61.0)


async def test_wrong_password_is_refused(guarded_plant, hub, running, tmp_path):
    adapter = OpcuaAdapter(make_config(guarded_plant.endpoint, username="operator", password="guess"), hub, tmp_path)
    retries = RetryLog(adapter.log)
    with retries:
        running(adapter)
        await retries.wait(2)
    assert any("BadUserAccessDenied" in m or "BadIdentityTokenRejected" in m for m in retries.messages), retries.messages
    assert not hub.devices["plc/boiler"].online


async def test_value_that_does_not_fit_the_point_type_is_bad(plant, hub, watch, running, tmp_path, caplog):
    config = make_config(plant.endpoint)
    devices = [d.model_dump() for d in config.devices]
    devices[0]["nodes"].append({"key": "mode_as_number", "node": f"ns={NS};s=Boiler.Mode", "type": "float"})
    running(OpcuaAdapter(make_config(plant.endpoint, devices=devices), hub, tmp_path))
    reading = await watch.until(lambda: hub.value("plc/boiler", "mode_as_number"))
    assert reading.quality is Quality.BAD and reading.value is None
    assert hub.value("plc/boiler", "mode").value == "auto"  # the same node on a str point is fine
    assert any(r.device == "plc/boiler" and "expected float" in r.getMessage() for r in caplog.records)



async def test_an_array_node_reads_as_json_text_on_a_str_point(plant, hub, watch, running, tmp_path):
    config = make_config(plant.endpoint)
    devices = [d.model_dump() for d in config.devices]
    devices[0]["nodes"] += [
        {"key": "profile", "node": f"ns={NS};s=Boiler.Profile", "type": "str"},
        {"key": "profile_as_number", "node": f"ns={NS};s=Boiler.Profile", "type": "float"},
    ]
    running(OpcuaAdapter(make_config(plant.endpoint, devices=devices), hub, tmp_path))
    await watch.until(lambda: hub.value("plc/boiler", "profile") and hub.value("plc/boiler", "profile_as_number"))
    assert json.loads(hub.value("plc/boiler", "profile").value) == [20.0, 35.5, 50.0]
    assert hub.value("plc/boiler", "profile").quality is Quality.GOOD
    assert hub.value("plc/boiler", "profile_as_number").quality is Quality.BAD  # an array is no number
    await plant.set("Profile", [20.0, 40.0, 55.0])
    await watch.until(lambda: json.loads(hub.value("plc/boiler", "profile").value) == [20.0, 40.0, 55.0])


async def test_a_command_on_a_method_point_calls_the_method(plant, hub, watch, running, tmp_path):
    config = make_config(plant.endpoint)
    devices = [d.model_dump() for d in config.devices]
    devices[0]["nodes"] += [
        {"key": "ramp", "node": f"ns={NS};s=Boiler.Ramp", "method": True},  # float: its argument
        {"key": "reset", "path": f"0:Objects/{NS}:Boiler/{NS}:Reset", "method": True, "type": "bool"},
    ]
    running(OpcuaAdapter(make_config(plant.endpoint, devices=devices), hub, tmp_path))
    await watch.until(lambda: (d := hub.devices.get("plc/boiler")) is not None and d.online)
    assert hub.devices["plc/boiler"].points["ramp"].writable

    result = await hub.execute(Command("plc/boiler", "ramp", 42.5, Origin.API))  # one Double argument
    assert result.status is CommandStatus.OK, result.reason
    assert await plant.get("Setpoint") == 42.5  # what the method did on the server
    assert hub.value("plc/boiler", "ramp").value == 42.5  # the value it was called with

    await plant.set("Counter", 17)
    result = await hub.execute(Command("plc/boiler", "reset", True, Origin.API))  # no argument: the value only triggers
    assert result.status is CommandStatus.OK, result.reason
    assert plant.calls == [("Ramp", 42.5), ("Reset", None)]
    assert await plant.get("Counter") == 0

    refused = await hub.execute(Command("plc/boiler", "ramp", "hot", Origin.API))
    assert refused.status is CommandStatus.REJECTED and "hot" in (refused.reason or "")  # not a number
    assert len(plant.calls) == 2  # nothing that does not fit reaches the server

async def test_deadband_suppresses_small_changes(plant, hub, watch, running, tmp_path):
    config = make_config(plant.endpoint)
    devices = [d.model_dump() for d in config.devices]
    devices[0]["nodes"][0]["deadband"] = {"type": "absolute", "value": 1.0}
    running(OpcuaAdapter(make_config(plant.endpoint, devices=devices), hub, tmp_path))
    await watch.until(lambda: (r := hub.value("plc/boiler", "pump")) and r.value is False)
    seen: list[object] = []
    hub.subscribe(lambda batch: seen.extend(r.value for r in batch if r.key == "temperature"))
    await plant.set("Temperature", 20.5)  # within the deadband of 20.0
    await plant.set("Pump", True)  # a marker: the publish that carries it would carry 20.5 too
    await watch.until(lambda: hub.value("plc/boiler", "pump").value is True)
    await plant.set("Temperature", 22.0)
    await watch.until(lambda: hub.value("plc/boiler", "temperature").value == 22.0)
    assert 20.5 not in seen
