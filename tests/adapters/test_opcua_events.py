"""OPC UA events and alarms against a real asyncua server on a loopback port."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator

import pytest
from asyncua import ua

from edged.adapters.opcua.adapter import OpcuaAdapter
from edged.config import load_config
from edged.errors import ConfigError
from edged.model import Command, CommandStatus, Reading
from tests.adapters.opcua_server import PlantServer, free_port
from tests.adapters.test_opcua import make_config


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    server = PlantServer(free_port())
    await server.start()
    yield server
    await server.stop()


async def raise_alarm(plant: PlantServer, severity: int, message: str, *, active: bool) -> bytes:
    assert plant.server is not None
    generator = await plant.server.get_event_generator(ua.ObjectIds.AlarmConditionType)
    event = generator.event
    event.Severity = severity
    event.SourceName = "Boiler"
    event.ConditionName = "HighTemperature"
    event.NodeId = ua.NodeId("Boiler.HighTemperature", 2)
    setattr(event, "ActiveState/Id", active)
    setattr(event, "AckedState/Id", False)
    setattr(event, "ConfirmedState/Id", False)
    event.ActiveState = ua.LocalizedText("Active" if active else "Inactive")
    event.Retain = True
    await generator.trigger(message=message)
    return event.EventId.Value  # the generator leaves it as a Variant


async def test_alarm_reaches_the_hub_and_low_severity_is_dropped(plant, hub, watch, running, tmp_path):
    events = [{"device": "alarms", "types": ["i=2915"], "min_severity": 500}]
    adapter = OpcuaAdapter(make_config(plant.endpoint, events=events), hub, tmp_path)
    running(adapter)
    await watch.until(lambda: (d := hub.devices.get("plc/alarms")) is not None and d.online)
    seen: list[Reading] = []
    hub.subscribe(lambda batch: seen.extend(r for r in batch if r.device_id == "plc/alarms"))

    await raise_alarm(plant, 100, "Boiler warm", active=True)  # below min_severity: never reported
    event_id = await raise_alarm(plant, 800, "Boiler too hot", active=True)
    reading = await watch.until(lambda: (r := hub.value("plc/alarms", "event")) and r)
    record = json.loads(reading.value)
    assert record["severity"] == 800
    assert record["message"] == "Boiler too hot"
    assert record["source"] == "Boiler"
    assert record["condition"] == "HighTemperature"
    assert record["condition_id"] == "ns=2;s=Boiler.HighTemperature"
    assert record["active"] is True and record["acked"] is False and record["confirmed"] is False
    assert record["type"] == "i=2915"
    assert record["event_id"] == event_id.hex()
    assert hub.value("plc/alarms", "severity").value == 800
    assert hub.value("plc/alarms", "active").value is True
    assert all(r.value != 100 for r in seen if r.key == "severity")

    await raise_alarm(plant, 800, "Boiler back to normal", active=False)
    await watch.until(lambda: (r := hub.value("plc/alarms", "active")) and r.value is False)
    assert hub.value("plc/alarms", "message").value == "Boiler back to normal"


async def test_acknowledge_and_confirm_call_the_condition_methods(plant, hub, watch, running, tmp_path):
    server = plant.server
    assert server is not None
    await server.nodes.objects.add_object(ua.NodeId("Boiler.HighTemperature", 2), "2:HighTemperature")
    calls: list[tuple[str, ua.NodeId, bytes, str]] = []
    for name, method in (("acknowledge", ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                         ("confirm", ua.ObjectIds.AcknowledgeableConditionType_Confirm)):  # fmt: skip

        def answer(parent: ua.NodeId, event_id: ua.Variant, comment: ua.Variant, name: str = name) -> list:
            calls.append((name, parent, event_id.Value, comment.Value.Text))
            return []

        server.link_method(server.get_node(method), answer)
    adapter = OpcuaAdapter(make_config(plant.endpoint, events=[{"device": "alarms", "types": ["i=2915"]}]), hub, tmp_path)
    running(adapter)
    await watch.until(lambda: (d := hub.devices.get("plc/alarms")) is not None and d.online)
    event_id = await raise_alarm(plant, 800, "Boiler too hot", active=True)
    await watch.until(lambda: (r := hub.value("plc/alarms", "event")) and json.loads(r.value)["event_id"])

    result = await hub.execute(Command("plc/alarms", "acknowledge", json.dumps({"event_id": event_id.hex(), "comment": "on it"})))
    assert result.status is CommandStatus.OK, result.reason
    result = await hub.execute(Command("plc/alarms", "confirm", event_id.hex()))
    assert result.status is CommandStatus.OK, result.reason
    condition = ua.NodeId("Boiler.HighTemperature", 2)
    assert calls == [("acknowledge", condition, event_id, "on it"), ("confirm", condition, event_id, "")]

    result = await hub.execute(Command("plc/alarms", "acknowledge", "00ff"))
    assert result.status is CommandStatus.FAILED
    assert result.reason == "no alarm with event id 00ff has been received"


def test_bad_min_severity_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "edged.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            adapters:
              - type: opcua
                endpoint: opc.tcp://plc:4840
                devices:
                  - id: boiler
                    nodes:
                      - {key: temp, node: 'ns=2;s=Boiler.Temp'}
                events:
                  - device: alarms
                    min_severity: 1200
            """
        )
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "edged.yaml:10: adapters[0].events[0].min_severity" in str(info.value)


def test_events_device_may_not_reuse_a_device_id(tmp_path):
    with pytest.raises(ValueError, match="two devices share the id 'boiler'"):
        make_config("opc.tcp://plc:4840", events=[{"device": "boiler"}])
