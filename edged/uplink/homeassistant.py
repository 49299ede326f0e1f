"""Home Assistant MQTT discovery: one retained config message per point.

With ``homeassistant:`` in the MQTT uplink, every point of every device
becomes an entity of a Home Assistant device (grouped under the gateway):
a ``sensor`` (numbers and strings), a ``binary_sensor`` (read-only bools),
a ``switch`` (writable bools) or a ``number`` (writable numbers). Entities
read the per-reading messages of ``topic`` (it must contain ``{point}``;
a reading of bad quality reads as unknown), are available while the gateway
and the device are online (the status topic, and a retained per-device
status topic under it), and send
their commands as ordinary cloud commands to ``command_topic``, so they go
through the Hub like any other (checked, held for offline devices,
answered on ``result_topic``). Units are translated from SenML to the
symbols Home Assistant expects, with a device class where one fits.

The MQTT link runs an ``Announcer`` while it is connected: on every
connection it announces the gateway and every device, then announces a
device that joins, removes one that leaves and says when one goes online
or offline, in the order it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from edged.errors import UplinkError
from edged.model import Device, DeviceAdded, DeviceStatus, Point, ValueType
from edged.tasks import TaskSet

if TYPE_CHECKING:
    from edged.hub import DeviceChange, Hub
    from edged.uplink.config import HomeAssistantConfig

# SenML unit -> (Home Assistant unit, device class)
UNITS: dict[str, tuple[str, str | None]] = {
    "Cel": ("°C", "temperature"),
    "%RH": ("%", "humidity"),
    "%EL": ("%", "battery"),
    "W": ("W", "power"),
    "kW": ("kW", "power"),
    "kWh": ("kWh", "energy"),
    "Wh": ("Wh", "energy"),
    "V": ("V", "voltage"),
    "mV": ("mV", "voltage"),
    "A": ("A", "current"),
    "lx": ("lx", "illuminance"),
    "Pa": ("Pa", "pressure"),
    "hPa": ("hPa", "pressure"),
    "Hz": ("Hz", "frequency"),
    "dBm": ("dBm", "signal_strength"),
    "m": ("m", "distance"),
    "%": ("%", None),
}
_ENERGY = {"energy"}  # device classes whose values only grow: state_class total_increasing

Message = tuple[str, str]  # (topic, payload); an empty payload removes the entity


def object_id(*parts: str) -> str:
    """An id Home Assistant accepts in a discovery topic: letters, digits, ``_`` and ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", "_".join(parts)).strip("_")


def component(point: Point) -> str:
    if point.type is ValueType.BOOL:
        return "switch" if point.writable else "binary_sensor"
    if point.writable and point.type in (ValueType.INT, ValueType.FLOAT):
        return "number"
    return "sensor"


def config_topic(prefix: str, gateway_id: str, device: Device, point: Point) -> str:
    return f"{prefix}/{component(point)}/{object_id(gateway_id, device.id)}/{object_id(point.key)}/config"


def entity(gateway_id: str, device: Device, point: Point, *, state_topic: str, status_topic: str,
           device_status_topic: str, command_topic: str) -> dict[str, Any]:  # fmt: skip
    """The discovery config of one point."""
    kind = component(point)
    config: dict[str, Any] = {
        "name": point.name or point.key,
        "unique_id": object_id("edged", gateway_id, device.id, point.key),
        "state_topic": state_topic,
        # Available while both the gateway and the device are online (both topics are retained).
        "availability": [{"topic": status_topic}, {"topic": device_status_topic}],
        "availability_mode": "all",
        "device": {
            "identifiers": [object_id("edged", gateway_id, device.id)],
            "name": device.name or device.id,
            "via_device": object_id("edged", gateway_id),
            **({"manufacturer": device.manufacturer} if device.manufacturer else {}),
            **({"model": device.model} if device.model else {}),
        },
    }
    # A reading of bad quality renders as None, which Home Assistant shows as unknown.
    if point.type is ValueType.BOOL:
        config["value_template"] = "{{ None if value_json.quality == 2 else ('ON' if value_json.value else 'OFF') }}"
    else:
        config["value_template"] = "{{ None if value_json.quality == 2 else value_json.value }}"
    unit, device_class = UNITS.get(point.unit or "", (point.unit, None))
    if unit and kind in ("sensor", "number"):
        config["unit_of_measurement"] = unit
    if device_class and kind in ("sensor", "number"):
        config["device_class"] = device_class
    if kind == "sensor" and point.type in (ValueType.INT, ValueType.FLOAT):
        config["state_class"] = "total_increasing" if device_class in _ENERGY else "measurement"
    command = {"device": device.id, "point": point.key}
    if kind == "switch":
        config["command_topic"] = command_topic
        config["payload_on"] = json.dumps({**command, "value": True})
        config["payload_off"] = json.dumps({**command, "value": False})
        config["state_on"], config["state_off"] = "ON", "OFF"  # else they default to the payloads above
    elif kind == "number":
        config["command_topic"] = command_topic
        config["command_template"] = json.dumps(command)[:-1] + ', "value": {{ value }}}'
        config["min"], config["max"] = -1e9, 1e9  # the device checks its own range
        config["step"] = 1 if point.type is ValueType.INT else 0.01
        config["mode"] = "box"
    return config


def gateway_entity(prefix: str, gateway_id: str, status_topic: str) -> Message:
    """A connectivity sensor for the gateway itself, the device every other one is ``via``."""
    config = {
        "name": "Connected",
        "unique_id": object_id("edged", gateway_id, "connected"),
        "state_topic": status_topic,
        "payload_on": "online",
        "payload_off": "offline",
        "device_class": "connectivity",
        "device": {"identifiers": [object_id("edged", gateway_id)], "name": f"edged {gateway_id}", "manufacturer": "edged"},
    }
    return f"{prefix}/binary_sensor/{object_id(gateway_id)}/connected/config", json.dumps(config)


def announce(prefix: str, gateway_id: str, device: Device, state_topic: Callable[[str, str], str], status_topic: str,
             device_status_topic: str, command_topic: str) -> list[Message]:  # fmt: skip
    """The retained config messages of every point of ``device``."""
    return [
        (config_topic(prefix, gateway_id, device, point),
         json.dumps(entity(gateway_id, device, point, state_topic=state_topic(device.id, point.key),
                           status_topic=status_topic, device_status_topic=device_status_topic,
                           command_topic=command_topic)))
        for point in device.points.values()
    ]  # fmt: skip


class Topics(Protocol):
    """Where the MQTT link publishes what Home Assistant reads, and takes what it sends."""

    status_topic: str
    command_topic: str

    def topic(self, device: str, point: str = "") -> str: ...

    def device_status_topic(self, device: str) -> str: ...


Retain = Callable[[list[Message]], Awaitable[None]]  # publish retained messages; UplinkError when disconnected


class Announcer:
    """Home Assistant's picture of the gateway's devices, kept up to date while connected."""

    def __init__(self, config: HomeAssistantConfig, gateway_id: str, hub: Hub, topics: Topics) -> None:
        self.prefix = config.discovery_prefix
        self.gateway_id = gateway_id
        self.hub = hub
        self.topics = topics
        self._announced: dict[str, list[str]] = {}  # device id -> the config topics announced for it

    @contextlib.asynccontextmanager
    async def announcing(self, retain: Retain) -> AsyncIterator[None]:
        """Announce the gateway and every device, then follow joins, leaves and status
        changes until the block ends (the connection's life)."""
        with self.hub.device_changes() as changes:
            tasks = TaskSet()
            try:
                await retain(self._everything())
                tasks.spawn(self._follow(changes, retain), name="home assistant discovery")
                yield
            finally:
                await tasks.close()

    async def _follow(self, changes: asyncio.Queue[DeviceChange], retain: Retain) -> None:
        while True:
            messages = self._change(await changes.get())
            with contextlib.suppress(UplinkError):  # the connection dropped: the next one announces everything
                await retain(messages)

    def _everything(self) -> list[Message]:
        messages = [gateway_entity(self.prefix, self.gateway_id, self.topics.status_topic)]
        for device in list(self.hub.devices.values()):
            messages += self._device(device)
        return messages

    def _change(self, event: DeviceChange) -> list[Message]:
        """Announce a device that joined (or changed its points), remove one that left, or
        say that one went online or offline."""
        if isinstance(event, DeviceAdded):
            return self._device(event.device)
        if isinstance(event, DeviceStatus):
            return [(self.topics.device_status_topic(event.device_id), "online" if event.online else "offline")]
        messages = [(topic, "") for topic in self._announced.pop(event.device_id, [])]
        messages.append((self.topics.device_status_topic(event.device_id), ""))
        return messages

    def _device(self, device: Device) -> list[Message]:
        """The configs of ``device``'s points and its availability."""
        status_topic = self.topics.device_status_topic(device.id)
        messages = announce(self.prefix, self.gateway_id, device, self.topics.topic, self.topics.status_topic,
                            status_topic, self.topics.command_topic)  # fmt: skip
        self._announced[device.id] = [topic for topic, _ in messages]
        messages.append((status_topic, "online" if device.online else "offline"))
        return messages
