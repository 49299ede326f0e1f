"""OPC UA events and alarms against a real asyncua server on a loopback port."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time

import pytest
import yaml
from asyncua import ua
from pydantic import TypeAdapter

from edged.adapters.opcua.adapter import OpcuaAdapter
from edged.adapters.opcua.budget import EventBudget
from edged.backoff import Backoff
from edged.config import load_config
from edged.errors import ConfigError
from edged.model import Command, CommandStatus, DeviceEvent, Reading, RuleEvent
from edged.outbox import OutboxConfig
from edged.rules.config import Rules
from edged.rules.engine import RulesEngine
from edged.uplink.config import UplinkConfig
from edged.uplink.uplinks import single
from tests.adapters.opcua_server import PlantServer
from tests.adapters.test_opcua import make_config
from tests.conftest import Watch
from tests.uplink.peers import collecting


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


# -- device events: to the uplink, to rules, bounded ---------------------------


def device_events(watch: Watch) -> list[DeviceEvent]:
    return [e for e in watch.events if isinstance(e, DeviceEvent)]


async def test_a_raised_and_cleared_alarm_reaches_the_mqtt_event_topic(plant, hub, watch, running, broker, tmp_path):
    adapter = OpcuaAdapter(make_config(plant.endpoint, events=[{"device": "alarms", "types": ["i=2915"]}]), hub, tmp_path)
    uplink_config = TypeAdapter(UplinkConfig).validate_python({"type": "mqtt", "host": "127.0.0.1", "port": broker.port})
    uplink = single(OutboxConfig(), uplink_config, hub, tmp_path / "state", "gw1", Backoff(initial=0.05, maximum=0.5))
    async with collecting(broker.port, "edged/gw1/events/device_event") as cloud:
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)
        running(adapter)
        await watch.until(lambda: (d := hub.devices.get("plc/alarms")) is not None and d.online)

        event_id = await raise_alarm(plant, 800, "Boiler too hot", active=True)
        await raise_alarm(plant, 800, "Boiler back to normal", active=False)
        await cloud.until(lambda: len(cloud.json) >= 2)

    raised, cleared = cloud.json
    assert {topic for topic, _ in cloud.messages} == {"edged/gw1/events/device_event"}
    assert raised["device"] == "plc/alarms" and raised["name"] == "HighTemperature"
    assert (raised["severity"], raised["message"]) == (800, "Boiler too hot")
    data = raised["data"]
    assert (data["active"], data["acked"], data["confirmed"]) == (True, False, False)
    assert data["source"] == "Boiler" and data["event_id"] == event_id.hex()
    assert data["condition_id"] == "ns=2;s=Boiler.HighTemperature"
    assert (cleared["message"], cleared["data"]["active"]) == ("Boiler back to normal", False)
    assert hub.value("plc/alarms", "active").value is False  # the readings are still there


async def test_a_rule_fires_on_an_alarm_of_its_severity_and_not_below(plant, hub, watch, running, tmp_path):
    adapter = OpcuaAdapter(make_config(plant.endpoint, events=[{"device": "alarms", "types": ["i=2915"]}]), hub, tmp_path)
    rules = TypeAdapter(Rules).validate_python(yaml.safe_load("""
        - id: boiler-alarm
          triggers: [{type: device_event, device: plc/alarms, name: HighTemperature, min_severity: 700}]
          actions: [{type: event, name: call_the_operator}]
    """))  # fmt: skip
    engine = RulesEngine(rules, hub, tmp_path / "rules")
    running(engine)
    await asyncio.wait_for(engine.started.wait(), 10)
    running(adapter)
    await watch.until(lambda: (d := hub.devices.get("plc/alarms")) is not None and d.online)

    await raise_alarm(plant, 500, "Boiler warm", active=True)  # reported, but below the rule's severity
    await raise_alarm(plant, 800, "Boiler too hot", active=True)
    fired = await watch.until(lambda: [e for e in watch.events if isinstance(e, RuleEvent)])
    assert [(e.rule_id, e.name) for e in fired] == [("boiler-alarm", "call_the_operator")]
    assert [(e.severity, e.message) for e in device_events(watch)] == [(500, "Boiler warm"), (800, "Boiler too hot")]
    assert engine.firings_total == 1
    assert engine.recent[-1]["trigger"] == "device event HighTemperature from plc/alarms severity 700+"


async def test_a_flood_of_events_is_bounded_and_counted(plant, hub, watch, running, tmp_path):
    rate = 5
    events = [{"device": "alarms", "types": ["i=2915"], "max_rate": rate}]
    adapter = OpcuaAdapter(make_config(plant.endpoint, events=events), hub, tmp_path)
    running(adapter)
    await watch.until(lambda: (d := hub.devices.get("plc/alarms")) is not None and d.online)
    messages: list[str] = []
    hub.subscribe(lambda batch: messages.extend(str(r.value) for r in batch if r.key == "message"))

    began = time.monotonic()
    for i in range(100):
        await raise_alarm(plant, 800, f"flood {i}", active=i % 2 == 0)
    await watch.until(lambda: messages and messages[-1] == "flood 99")
    elapsed = time.monotonic() - began
    flood = device_events(watch)
    assert len(messages) == 100  # every event still changes the readings
    assert 1 <= len(flood) <= rate * (1 + elapsed) < 100

    await asyncio.sleep(1 / rate)  # one more event's worth of the budget comes back
    await raise_alarm(plant, 800, "after the flood", active=False)
    after = await watch.until(lambda: [e for e in device_events(watch) if e.message == "after the flood"])
    passed = device_events(watch)
    assert sum(1 + e.data.get("dropped", 0) for e in passed) == 101  # each event passed on or counted
    assert after[0].data["dropped"] > 0


def test_the_event_budget_refills_at_its_rate_and_counts_what_it_holds_back():
    now = [0.0]
    budget = EventBudget(0.5, clock=lambda: now[0])  # one event every two seconds, one at once
    assert [budget.take() for _ in range(3)] == [True, False, False]
    now[0] = 1.0
    assert budget.take() is False
    now[0] = 2.0
    assert budget.take() is True
    assert (budget.held_back(), budget.held_back(), budget.dropped_total) == (3, 0, 3)
