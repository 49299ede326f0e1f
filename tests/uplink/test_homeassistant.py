"""Home Assistant MQTT discovery against a real mosquitto: what Home Assistant
reads (retained configs, per-reading state topics, availability) and what it
sends back (its switch and number commands reach the device through the Hub).
The templates in the configs are rendered with Jinja2, as Home Assistant does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiomqtt
import jinja2
import pytest
from pydantic import TypeAdapter, ValidationError

from edged.hub import Hub
from edged.model import Command, Device, Point, Quality, Reading, ValueType
from edged.outbox import OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.uplinks import single
from tests.uplink.peers import Broker, collecting

CONFIG = {"type": "mqtt", "host": "127.0.0.1", "topic": "{prefix}/{device}/{point}", "homeassistant": {}}


def render(template: str, **variables: Any) -> str:
    return jinja2.Environment().from_string(template).render(**variables)


def latest(collector: Any, topic: str) -> Any:
    return next(json.loads(p) for t, p in reversed(collector.messages) if t == topic)


def text(collector: Any, topic: str) -> str | None:
    """The latest payload on ``topic``, as text."""
    return next((p.decode() for t, p in reversed(collector.messages) if t == topic), None)


def configs(collector: Any) -> dict[str, dict[str, Any] | None]:
    """The latest discovery config per topic (None once removed)."""
    out: dict[str, dict[str, Any] | None] = {}
    for topic, payload in collector.messages:
        if topic.startswith("homeassistant/"):
            out[topic] = json.loads(payload) if payload else None
    return out


async def test_every_point_is_announced_and_home_assistant_commands_reach_the_device(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    hub.add_device(Device("plant/boiler", "plant", "Boiler", "Acme", "B1", points={
        "temperature": Point("temperature", ValueType.FLOAT, "Cel"),
        "energy": Point("energy", ValueType.FLOAT, "kWh"),
        "burner": Point("burner", ValueType.BOOL),
        "pump": Point("pump", ValueType.BOOL, writable=True),
        "setpoint": Point("setpoint", ValueType.FLOAT, "Cel", writable=True),
    }, online=True))  # fmt: skip
    writes: list[Command] = []

    async def write(command: Command) -> None:
        writes.append(command)

    hub.attach_writer("plant", write)
    config = TypeAdapter(UplinkConfig).validate_python({**CONFIG, "port": broker.port})
    async with collecting(broker.port, "#") as cloud:
        uplink = single(OutboxConfig(), config, hub, tmp_path / "state", "gw1")
        running(uplink)
        node = "homeassistant/{}/gw1_plant_boiler/{}/config"
        await cloud.until(lambda: node.format("number", "setpoint") in configs(cloud))
        found = configs(cloud)
        assert set(found) == {
            node.format("sensor", "temperature"), node.format("sensor", "energy"), node.format("binary_sensor", "burner"),
            node.format("switch", "pump"), node.format("number", "setpoint"),
            "homeassistant/binary_sensor/gw1/connected/config",
        }
        temperature = found[node.format("sensor", "temperature")]
        assert temperature is not None
        assert (temperature["state_topic"], temperature["unit_of_measurement"], temperature["device_class"]) == (
            "edged/gw1/plant/boiler/temperature", "°C", "temperature")
        availability = [a["topic"] for a in temperature["availability"]]
        assert availability == ["edged/gw1/status", "edged/gw1/status/plant/boiler"]
        assert temperature["availability_mode"] == "all"
        assert temperature["device"]["identifiers"] == ["edged_gw1_plant_boiler"]
        assert (temperature["device"]["manufacturer"], temperature["device"]["model"]) == ("Acme", "B1")
        assert found[node.format("sensor", "energy")]["state_class"] == "total_increasing"  # type: ignore[index]

        # What Home Assistant reads from the state and availability topics (through its templates):
        state_topic = temperature["state_topic"]
        hub.publish([Reading("plant/boiler", "temperature", 61.5, 1_700_000_000.0)])
        await cloud.until(lambda: any(t == state_topic for t, _ in cloud.messages))
        assert render(temperature["value_template"], value_json=latest(cloud, state_topic)) == "61.5"
        hub.publish([Reading("plant/boiler", "temperature", 61.5, 1_700_000_001.0, Quality.BAD)])
        await cloud.until(lambda: latest(cloud, state_topic)["quality"] == 2)
        assert render(temperature["value_template"], value_json=latest(cloud, state_topic)) == "None"  # unknown
        assert text(cloud, availability[0]) == "online" and text(cloud, availability[1]) == "online"
        hub.set_online("plant/boiler", False)
        await cloud.until(lambda: text(cloud, availability[1]) == "offline")
        hub.set_online("plant/boiler", True)
        await cloud.until(lambda: text(cloud, availability[1]) == "online")

        pump, setpoint = found[node.format("switch", "pump")], found[node.format("number", "setpoint")]
        assert pump is not None and setpoint is not None
        hub.publish([Reading("plant/boiler", "pump", True, 1_700_000_000.0)])
        await cloud.until(lambda: any(t == pump["state_topic"] for t, _ in cloud.messages))
        assert render(pump["value_template"], value_json=latest(cloud, pump["state_topic"])) == pump["state_on"]

        # What Home Assistant sends: the switch's payload_on, the number's command_template rendered.
        async with aiomqtt.Client("127.0.0.1", broker.port) as home_assistant:
            await home_assistant.publish(pump["command_topic"], pump["payload_on"], qos=1)
            await home_assistant.publish(setpoint["command_topic"], render(setpoint["command_template"], value=21.5), qos=1)
        await cloud.until(lambda: len(writes) == 2)
        assert [(c.device_id, c.key, c.value) for c in writes] == [("plant/boiler", "pump", True), ("plant/boiler", "setpoint", 21.5)]

        # A device that joins is announced; one that leaves is removed.
        hub.add_device(Device("zigbee/lamp", "zigbee", points={"on": Point("on", ValueType.BOOL, writable=True)}))
        lamp = "homeassistant/switch/gw1_zigbee_lamp/on/config"
        await cloud.until(lambda: configs(cloud).get(lamp) is not None)
        await cloud.until(lambda: text(cloud, "edged/gw1/status/zigbee/lamp") == "offline")  # added, not yet heard
        hub.remove_device("zigbee/lamp")
        await cloud.until(lambda: lamp in configs(cloud) and configs(cloud)[lamp] is None)
        await cloud.until(lambda: text(cloud, "edged/gw1/status/zigbee/lamp") == "")


def test_discovery_needs_one_message_per_reading() -> None:
    with pytest.raises(ValidationError, match=r"put \{point\} in topic"):
        TypeAdapter(UplinkConfig).validate_python({**CONFIG, "topic": "{prefix}/data/{device}"})
