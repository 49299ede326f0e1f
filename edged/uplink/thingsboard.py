"""ThingsBoard uplink (``type: mqtt``, ``profile: thingsboard``): the gateway
speaks ThingsBoard's MQTT gateway API, as the ThingsBoard IoT Gateway does,
so every device behind edged becomes a ThingsBoard device of its own.

The gateway is one ThingsBoard device with *Is gateway* set; its access
token is the MQTT ``username`` (no password), or it authenticates with an
X.509 client certificate (``tls``). Each edged device appears in ThingsBoard
under its edged id (``modbus/boiler``), the name the status page shows.

What the gateway publishes (QoS ``qos``; a row leaves the outbox only once
the broker acknowledged each of its messages):

- ``v1/gateway/connect`` ``{"device": "modbus/boiler", "type": "modbus"}``
  for every device at each connection, for a device that joins, and before
  the first readings of a device not announced yet; ``type`` (the device
  profile) is ``thingsboard.device_type`` or the device's adapter.
- ``v1/gateway/attributes`` (client-side attributes) with what edged knows
  of the device: ``adapter``, ``name``, ``manufacturer``, ``model``,
  ``online``, and ``points`` (type, unit, writable, name of each point);
  ``online`` again whenever the device goes online or offline.
- ``v1/gateway/disconnect`` for a device that leaves edged. A device that
  only goes offline stays connected: ThingsBoard stops routing RPCs and
  attribute updates to a disconnected device, and edged holds writes for an
  offline device until it is back.
- ``v1/gateway/telemetry``: each readings row as
  ``{"modbus/boiler": [{"ts": 1767225600250, "values": {"temperature": 21.5}}, ...]}``,
  readings of the same millisecond in one entry (a key seen twice in one
  millisecond starts another entry). Readings of bad quality, and those
  without a value, are left out. A message larger than the broker's or
  ``max_message_bytes``'s limit is split between entries.
- ``v1/devices/me/telemetry`` (the gateway's own telemetry) for a rule's
  event: ``{"ts": ..., "values": {"<event name>": {"rule": "<rule id>", "data": {...}}}}``.
- ``v1/gateway/rpc`` the answer to each RPC, ``{"device": ..., "id": ..., "data": ...}``.

Device status events stored in the outbox are not sent again (the
``online`` attribute is the Hub's state as it changes, so an old event
replayed after an outage cannot overwrite a newer state), nor are the
results of writes that did not come from an RPC.

What the gateway takes:

- RPCs on ``v1/gateway/rpc``, ``{"device": ..., "data": {"id": 7, "method": ..., "params": ...}}``:
  ``set`` with ``"params": "<point> <value>"`` (or ``"<point>; <value>;"``, as
  the IoT Gateway's built-in methods take an address and a value) and a
  method named after a point with the value as ``params`` write the point,
  through the Hub like any cloud command (checked, held for an offline
  device); the command's result is the answer: ``{"success": true, "status":
  "ok"}``, or ``{"success": false, "status": "rejected", "error": "..."}``.
  ``get`` with ``"params": "<point>"``, and a point's method without
  ``params``, are answered at once with the last value the Hub has:
  ``{"result": 21.5}``. Anything else is answered ``{"error": ...}`` when it
  names a device and an id, and refused without an answer when it does not.
- Shared attribute updates on ``v1/gateway/attributes``,
  ``{"device": ..., "data": {"setpoint": 22}}``: each key that is a writable
  point of the device is written like a ``set``; other keys are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from edged.errors import Refused, UplinkError
from edged.hub import DeviceChange, Hub
from edged.model import (
    Command,
    CommandStatus,
    Device,
    DeviceAdded,
    DeviceRemoved,
    DeviceStatus,
    Event,
    Origin,
    Point,
    Quality,
    Value,
    ValueType,
    describe,
)
from edged.outbox import EVENT, Row
from edged.tasks import TaskSet
from edged.uplink.commands import MAX_COMMAND_BYTES, MAX_ID, MAX_NAME, Rejected
from edged.uplink.config import MqttUplinkConfig, ThingsboardConfig
from edged.uplink.link import LinkContext
from edged.uplink.mqtt import PACKET_OVERHEAD, PUBLISH_TIMEOUT, Client, session

log = logging.getLogger(__name__)

CONNECT = "v1/gateway/connect"
DISCONNECT = "v1/gateway/disconnect"
ATTRIBUTES = "v1/gateway/attributes"
TELEMETRY = "v1/gateway/telemetry"
RPC = "v1/gateway/rpc"
OWN_TELEMETRY = "v1/devices/me/telemetry"  # the gateway's own, as a ThingsBoard device

_ANSWER = "rpc"  # first item of the command id of an RPC: ["rpc", device name, request id]
_ADDRESS = re.compile(r"\s*([^;\s]+)\s*;?\s*(.*?)\s*;?\s*", re.DOTALL)  # "<point> <value>", "<point>; <value>;"
_PLAIN = (bool, int, float, str)

Message = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class Read:
    """An RPC asking for a point's last value: answered at once, from the Hub."""

    device: str
    request_id: int | str
    key: str


def answer_id(device: str, request_id: int | str) -> str:
    """The command id of an RPC: it names where its result is answered."""
    return json.dumps([_ANSWER, device, request_id], separators=(",", ":"))


def answered(command_id: Any) -> tuple[str, int | str] | None:
    """The device and request id an RPC's result goes to, or None for a command that came otherwise."""
    if not isinstance(command_id, str) or not command_id.startswith(f'["{_ANSWER}",'):
        return None
    with contextlib.suppress(ValueError):
        kind, device, request_id = json.loads(command_id)
        if kind == _ANSWER and isinstance(device, str) and isinstance(request_id, (int, str)):
            return device, request_id
    return None


class ThingsboardLink:
    """The uplink to ThingsBoard's MQTT gateway API; ``send`` returns once the broker acknowledged."""

    def __init__(self, config: MqttUplinkConfig, context: LinkContext) -> None:
        self.config = config
        self.settings = config.thingsboard or ThingsboardConfig()
        self.gateway_id = context.gateway_id
        self.hub: Hub = context.hub
        self.client: Client | None = None  # while connected
        self.max_packet: int | None = None  # bytes a PUBLISH packet may have, while connected
        self.commands_repeated = 0  # an RPC comes once: never a repeat
        self._announced: set[str] = set()  # devices connected to ThingsBoard on this connection

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        """Connect, announce every device of the Hub, then follow joins, leaves and status
        changes until the block ends; always disconnect."""
        async with session(self.config, self.gateway_id, None) as client:
            self.client = client
            limits = [size for size in (self.config.max_message_bytes, client.max_packet_size) if size]
            self.max_packet = min(limits) if limits else None
            self._announced = set()
            tasks = TaskSet()
            try:
                with self.hub.device_changes() as changes:
                    await self._announce_all(self._announce(device) for device in list(self.hub.devices.values()))
                    tasks.spawn(self._follow(changes), name="thingsboard devices")
                    yield
            finally:
                await tasks.close()
                self.client = None

    # -- devices ----------------------------------------------------------

    def _announce(self, device: Device) -> Iterable[Message]:
        """A device's connect message and its attributes."""
        self._announced.add(device.id)
        points = {key: _without_none({"type": point.type.value, "unit": point.unit, "writable": point.writable,
                                      "name": point.name}) for key, point in device.points.items()}  # fmt: skip
        attributes = _without_none({"adapter": device.adapter, "name": device.name, "manufacturer": device.manufacturer,
                                    "model": device.model, "online": device.online, "points": points})  # fmt: skip
        return [self._connect_message(device.id, device.adapter), (ATTRIBUTES, _dumps({device.id: attributes}))]

    def _connect_message(self, device_id: str, adapter: str) -> Message:
        return CONNECT, _dumps({"device": device_id, "type": self.settings.device_type or adapter})

    def _change(self, event: Event) -> Iterable[Message]:
        if isinstance(event, DeviceAdded):
            return self._announce(event.device)
        if isinstance(event, DeviceStatus):
            return [(ATTRIBUTES, _dumps({event.device_id: {"online": event.online}}))]
        assert isinstance(event, DeviceRemoved)
        self._announced.discard(event.device_id)
        return [(DISCONNECT, _dumps({"device": event.device_id}))]

    async def _follow(self, changes: asyncio.Queue[DeviceChange]) -> None:
        while True:
            messages = self._change(await changes.get())
            with contextlib.suppress(UplinkError):  # the connection dropped: the next one announces everything
                await self._announce_all([messages])

    # -- rows --------------------------------------------------------------

    async def send(self, row: Row) -> None:
        """Publish one row and return once the broker took it; ``Refused`` if it said no."""
        if row.kind == EVENT:
            message = self._event(row.subject, json.loads(row.payload))
            if message is not None:
                await self._publish(*message)
            return
        device_id = row.subject
        if device_id not in self._announced:  # a device the Hub no longer has, or readings ahead of its join
            device = self.hub.devices.get(device_id)
            announce = self._announce(device) if device is not None else [self._connect_message(device_id, device_id.partition("/")[0])]
            self._announced.add(device_id)
            await self._announce_all([announce])
        entries = [_dumps(entry) for entry in telemetry(json.loads(row.payload))]
        for payload in _messages(_dumps(device_id), entries, self._room(TELEMETRY)):
            await self._publish(TELEMETRY, payload)

    def _event(self, kind: str, event: dict[str, Any]) -> Message | None:
        """The message an event becomes, or None for one ThingsBoard is not told of."""
        if kind == "command_result":
            target = answered(event.get("id")) if event.get("origin") == Origin.CLOUD else None
            if target is None:
                return None
            device, request_id = target
            return RPC, _dumps({"device": device, "id": request_id, "data": _result(event)})
        if kind == "rule":
            values = {str(event.get("name") or event.get("rule")): {"rule": event.get("rule"), "data": event.get("data")}}
            return OWN_TELEMETRY, _dumps({"ts": _ms(event.get("ts") or time.time()), "values": values})
        return None

    def _room(self, topic: str) -> int | None:
        """Bytes a payload on ``topic`` may have, if the broker or the configuration sets a limit."""
        if self.max_packet is None:
            return None
        return self.max_packet - len(topic.encode()) - PACKET_OVERHEAD

    async def _publish(self, topic: str, payload: bytes) -> None:
        room = self._room(topic)
        if room is not None and len(payload) > room:
            raise Refused(topic, f"a message of {len(payload)} bytes does not fit in a packet of {self.max_packet} bytes",
                          permanent=True, final=True)  # fmt: skip
        try:
            await self._client().publish_checked(topic, payload, self.config.qos, PUBLISH_TIMEOUT)
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"publish failed: {exc}") from exc

    async def _announce_all(self, groups: Iterable[Iterable[Message]]) -> None:
        """Publish groups of announcements, ``inflight`` groups at a time, each group in order.
        One the broker refuses (a device of so many points that its attributes exceed the
        packet limit) is logged and left: the devices' readings still go."""

        async def in_order(group: Iterable[Message]) -> None:
            for topic, payload in group:
                try:
                    await self._publish(topic, payload)
                except Refused as exc:
                    log.warning("not announced to ThingsBoard: %s", exc)

        pending = list(groups)
        for start in range(0, len(pending), self.config.inflight):
            await asyncio.gather(*(in_order(group) for group in pending[start : start + self.config.inflight]))

    # -- RPCs and attribute updates ------------------------------------------

    async def publish_state(self, payload: bytes) -> bool:
        """No place for edged's state digest: ThingsBoard shows the devices' attributes."""
        return False

    async def commands(self) -> AsyncIterator[Command | Rejected]:
        """Every RPC and shared attribute update that writes a point, as a Command; a malformed
        RPC as a Rejected; reads answered on the spot. ``UplinkError`` when disconnected."""
        client = self._client()
        try:
            await client.subscribe(RPC, qos=1)
            await client.subscribe(ATTRIBUTES, qos=1)
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, (bytes, bytearray)) else b""
                if message.topic.matches(ATTRIBUTES):
                    for command in self.updates(payload):
                        yield command
                    continue
                request = self.request(payload)
                if isinstance(request, Read):
                    try:
                        await self._answer_read(request)
                    except Refused as exc:  # the broker said no to this answer: the next RPC is answered
                        log.warning("RPC %r of %s not answered: %s", request.request_id, request.device, exc)
                elif request is not None:
                    yield request
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"connection lost: {exc}") from exc

    def request(self, payload: bytes | bytearray) -> Command | Rejected | Read | None:
        """What an RPC message asks for; None for an RPC's answer (a broker shows the gateway its own)."""
        try:
            message = _decode(payload)
        except ValueError as exc:
            return Rejected(None, str(exc))
        if not isinstance(message, dict):
            return Rejected(None, "expected an object with device and data")
        data = message.get("data")
        if "id" in message and not (isinstance(data, dict) and "method" in data):
            return None
        device = message.get("device")
        if not isinstance(data, dict):
            return Rejected(None, "expected data: an object with id, method and params")
        if not isinstance(device, str) or not device or len(device) > MAX_NAME:
            return Rejected(None, f"device must be a non-empty string of at most {MAX_NAME} characters")
        request_id = data.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, (int, str)) or len(str(request_id)) > MAX_ID:
            return Rejected(None, f"data.id must be an integer or a string of at most {MAX_ID} characters")
        answer = answer_id(device, request_id)
        method, params = data.get("method"), data.get("params")
        if not isinstance(method, str):
            return Rejected(answer, "data.method must be a string")
        known = self.hub.devices.get(device)
        if known is None:
            return Rejected(answer, f"unknown device {describe(device)}")
        if method.lower() in ("get", "set"):
            return self._builtin(answer, request_id, known, method.lower(), params)
        point = known.points.get(method)
        if point is None:
            return Rejected(answer, f"unknown method {describe(method)}: expected get, set or a point of {device}")
        if params is None:
            return Read(device, request_id, method)
        if isinstance(params, dict) and set(params) == {"value"}:
            params = params["value"]
        value = _typed(params, point)
        if value is None:
            return Rejected(answer, f"params must be the value to write (a bool, number or string), got {_kind(params)}")
        return Command(device, method, value, Origin.CLOUD, id=answer)

    def _builtin(self, answer: str, request_id: int | str, device: Device, method: str, params: Any) -> Command | Rejected | Read:
        """The IoT Gateway's ``get "<point>"`` and ``set "<point> <value>"``, the point key as the address."""
        usage = "'<point>'" if method == "get" else "'<point> <value>'"
        match = _ADDRESS.fullmatch(params) if isinstance(params, str) else None
        if match is None or (method == "set") != bool(match.group(2)):
            return Rejected(answer, f"{method} takes params {usage}, got {describe(params)}")
        key, text = match.groups()
        if method == "get":
            return Read(device.id, request_id, key)
        return Command(device.id, key, _typed(text, device.points.get(key)), Origin.CLOUD, id=answer)

    async def _answer_read(self, read: Read) -> None:
        reading = self.hub.value(read.device, read.key)
        known = self.hub.devices.get(read.device)
        if known is None or read.key not in known.points:
            data: dict[str, Any] = {"error": f"device {read.device!r} has no point {describe(read.key)}"}
        elif reading is None or reading.value is None:
            data = {"error": f"no value of {read.device}.{read.key} yet"}
        else:
            data = {"result": reading.value}
        await self._publish(RPC, _dumps({"device": read.device, "id": read.request_id, "data": data}))

    def updates(self, payload: bytes | bytearray) -> list[Command]:
        """The writes a shared attribute update asks for: one per key that is a writable point."""
        try:
            message = _decode(payload)
        except ValueError as exc:
            log.debug("attribute update ignored: %s", exc)
            return []
        if not isinstance(message, dict) or not isinstance(message.get("device"), str) or not isinstance(message.get("data"), dict):
            return []  # not an update (the gateway's own attributes, shown back by a broker)
        device_id, data = message["device"], message["data"]
        device = self.hub.devices.get(device_id)
        commands = []
        for key, raw in data.items():
            point = device.points.get(key) if device is not None else None
            value = _typed(raw, point)
            if point is None or not point.writable or value is None:
                log.debug("attribute %s of %s is not a writable point or not a value: ignored", describe(key), describe(device_id))
                continue
            commands.append(Command(device_id, key, value, Origin.CLOUD))
        return commands

    def _client(self) -> Client:
        if self.client is None:
            raise UplinkError("not connected")
        return self.client


def telemetry(readings: Iterable[list[Any]]) -> list[dict[str, Any]]:
    """Readings ``[key, value, ts, quality]`` as ThingsBoard telemetry entries, one per
    millisecond (and another when a key comes twice in it); bad or empty readings left out."""
    entries: list[dict[str, Any]] = []
    latest: dict[int, dict[str, Any]] = {}  # ms -> the last entry of that instant
    for key, value, ts, quality in readings:
        if value is None or quality == Quality.BAD:
            continue
        ms = _ms(ts)
        entry = latest.get(ms)
        if entry is None or key in entry["values"]:
            entry = latest[ms] = {"ts": ms, "values": {}}
            entries.append(entry)
        entry["values"][key] = value
    return entries


def _messages(device: bytes, entries: list[bytes], room: int | None) -> list[bytes]:
    """``{device: [entries]}`` payloads, each within ``room`` bytes where a single entry allows."""
    head, tail = b"{" + device + b":[", b"]}"
    parts: list[list[bytes]] = []
    size = 0
    for entry in entries:
        if not parts or (room is not None and size + len(entry) + 1 > room):
            parts.append([])
            size = len(head) + len(tail)
        parts[-1].append(entry)
        size += len(entry) + 1
    return [head + b",".join(part) + tail for part in parts]


def _result(event: dict[str, Any]) -> dict[str, Any]:
    """An RPC's answer, from its command's result."""
    status = event.get("status")
    if status in (CommandStatus.OK, CommandStatus.PENDING):
        return _without_none({"success": True, "status": status, "reason": event.get("reason")})
    return {"success": False, "status": status, "error": event.get("reason") or status}


def _typed(raw: Any, point: Point | None) -> Value:
    """A value to write: text becomes a number or a bool unless the point holds text; None
    when ``raw`` is no value at all (null, an array, an object)."""
    if isinstance(raw, str) and not (point is not None and point.type is ValueType.STR):
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
            if isinstance(parsed, _PLAIN):
                return parsed  # type: ignore[no-any-return]
    return raw if isinstance(raw, _PLAIN) else None


def _decode(payload: bytes | bytearray) -> Any:
    """A message's JSON, or ``ValueError`` saying why it has none (too large, not UTF-8, not JSON)."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"message of {len(payload)} bytes; at most {MAX_COMMAND_BYTES} are taken")
    try:
        return json.loads(bytes(payload).decode(), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ValueError(f"bad JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ValueError("bad JSON: nested too deep") from None
    except ValueError as exc:
        raise ValueError(f"bad JSON: {exc}") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(value), type(value).__name__)


def _ms(ts: Any) -> int:
    return round(float(ts) * 1000)


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
