"""Sparkplug B uplink (``type: mqtt``, ``profile: sparkplug_b``): the gateway as a
Sparkplug 3.0 edge node, its devices as Sparkplug devices.

Topics are ``spBv1.0/{group}/{verb}/{node}[/{device}]``. An edged device id
such as ``modbus/boiler`` is not a Sparkplug id (no ``/``, ``+`` or ``#``);
it is written ``modbus:boiler``: ``/`` becomes ``:``, and ``%``, ``:``,
``+`` and ``#`` become ``%25``, ``%3A``, ``%2B`` and ``%23``, so every
device id has its own Sparkplug id and the DCMD topic leads back to it.

Per connection:

- the Last Will is an NDEATH with ``bdSeq``, a number from 0 to 255 that
  grows by one per connection attempt and is kept in ``sparkplug-<hash of
  group and node>.bdseq`` in the state folder, so it goes on across restarts;
- with ``primary_host_id``, the node waits for the host's STATE (``{"online":
  true, "timestamp": ms}``) before it is born; a STATE saying the host went
  offline (and no older than the last one) makes it publish its NDEATH and
  end the connection, and the next one waits again. Meanwhile nothing is
  acknowledged: rows stay in the outbox;
- NBIRTH (``seq`` 0): ``bdSeq``, ``Node Control/Rebirth`` (false),
  ``Properties/Software`` and ``Commands/Last Rejected``; then a DBIRTH per
  online device with every point as a metric: name = point key, an alias,
  the datatype of its type (bool Boolean, int Int64, float Double, str
  String), its unit as the property ``engUnit``, its last value;
- each readings row is a DDATA (aliases only, timestamps in ms). A reading
  older than the birth that announced its device's values is flagged
  ``is_historical`` (what waited in the outbox through an outage or while
  the host was away). A reading of bad or uncertain quality carries the
  property ``Quality`` (Int32: 0 bad, 64 uncertain; the OPC codes, of which
  192 is good). A device that is not born when its row comes (it joined just
  now, is offline, or is no longer known) is born first from what the Hub
  and the row say, and if it is not online, dies again after the DDATA;
- devices follow the Hub: a device that comes online (or joins online) gets
  a DBIRTH, one that goes offline or leaves a DDEATH;
- ``seq`` goes 0 (NBIRTH), 1 .. 255, 0, ... over every message but NDEATH in
  the order they are handed to the MQTT client, whatever runs concurrently.

Messages are published with the uplink's ``qos`` (1 by default), births and
data alike, so that they keep their order and the outbox drops a row only
once the broker has it. (Sparkplug asks for QoS 0 on BIRTH and DATA
messages; a host application receives them the same.)

Commands: NCMD ``Node Control/Rebirth`` = true publishes NBIRTH and every
DBIRTH again. A DCMD is one command per metric, found by name or alias, its
value of the point's type (an int point takes the integer datatypes, a float
point also Float, Double and integers, a str point String and Text). A
message that cannot be taken (bad protobuf, over 64 KiB, an unknown device
or metric, a wrong datatype, no value, or an NCMD other than a rebirth) is
refused as a whole, and the refusal is published as NDATA of ``Commands/Last
Rejected`` (``"DCMD/modbus:boiler: <reason>"``). The result of a command
from the cloud is a DDATA of the written metric with the value the device
reports now; when it was not carried out, that metric carries the
properties ``writeStatus`` (``rejected``, ``failed``, ``timeout`` or
``pending``) and ``writeReason``. Results of commands from rules or the API,
``device_status`` events (births and deaths say it) and ``rule`` events are
acknowledged without a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from google.protobuf.message import DecodeError

from edged import __version__
from edged.errors import Refused, UplinkError
from edged.files import write_atomic
from edged.model import Command, Device, DeviceAdded, DeviceRemoved, DeviceStatus, Event, Origin, Quality, Value, ValueType
from edged.outbox import READINGS, Row
from edged.tasks import TaskSet
from edged.uplink.commands import Rejected
from edged.uplink.config import MqttUplinkConfig
from edged.uplink.link import LinkContext
from edged.uplink.mqtt import PUBLISH_TIMEOUT, Client, session
from edged.uplink.sparkplug_payload import DataType, Payload

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
MAX_COMMAND_BYTES = 64 * 1024  # a larger NCMD or DCMD is refused unread
BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
SOFTWARE = "Properties/Software"
LAST_REJECTED = "Commands/Last Rejected"
NODE = ""  # the "device" of the node's own metrics, in the alias table
BDSEQ_FILE = "sparkplug-{digest}.bdseq"  # one per group and node, in the state directory
PACKET_ROOM = 256  # bytes of a PUBLISH packet besides its payload: header, topic, seq

DATATYPES = {ValueType.BOOL: DataType.BOOLEAN, ValueType.INT: DataType.INT64, ValueType.FLOAT: DataType.DOUBLE,
             ValueType.STR: DataType.STRING}  # fmt: skip
QUALITY = {Quality.UNCERTAIN: 64, Quality.BAD: 0}  # the OPC codes Sparkplug hosts show (192 is good)
_INTEGERS = {  # datatype -> (bits, signed)
    DataType.INT8: (8, True), DataType.INT16: (16, True), DataType.INT32: (32, True), DataType.INT64: (64, True),
    DataType.UINT8: (8, False), DataType.UINT16: (16, False), DataType.UINT32: (32, False), DataType.UINT64: (64, False),
}  # fmt: skip
_ESCAPES = {"%": "%25", ":": "%3A", "+": "%2B", "#": "%23", "/": ":"}
_UNESCAPES = {escaped: char for char, escaped in _ESCAPES.items()}
_ESCAPE = re.compile("[%:+#/]")
_UNESCAPE = re.compile("%25|%3A|%2B|%23|:")


def sparkplug_id(edged_id: str) -> str:
    """The Sparkplug id of an edged device (or gateway) id: ``modbus/boiler`` -> ``modbus:boiler``."""
    return _ESCAPE.sub(lambda match: _ESCAPES[match.group()], edged_id)


def edged_id(spark_id: str) -> str:
    """The edged id a Sparkplug id stands for (the inverse of ``sparkplug_id``)."""
    return _UNESCAPE.sub(lambda match: _UNESCAPES[match.group()], spark_id)


def _ms(ts: float) -> int:
    return round(ts * 1000)


def datatype_of(value: Value) -> DataType:
    """The datatype of a value whose point edged does not know."""
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int):
        return DataType.INT64
    if isinstance(value, float):
        return DataType.DOUBLE
    return DataType.STRING


def put_value(metric: Any, datatype: DataType, value: Value) -> None:
    """Set ``metric``'s value as ``datatype`` holds it; a value it cannot hold is sent as null."""
    if value is None:
        metric.is_null = True
    elif datatype is DataType.BOOLEAN and isinstance(value, bool):
        metric.boolean_value = value
    elif datatype is DataType.INT64 and isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        metric.long_value = int(value) % 2**64  # two's complement, as Sparkplug carries Int64
    elif datatype is DataType.DOUBLE and isinstance(value, (int, float)) and not isinstance(value, bool):
        metric.double_value = float(value)
    elif datatype is DataType.STRING and isinstance(value, str):
        metric.string_value = value
    else:
        metric.is_null = True


def take_value(metric: Any, kind: ValueType, expected: DataType) -> Value:
    """The value a command metric carries for a point of type ``kind``; ``ValueError`` says why there is none."""
    if metric.is_null or metric.WhichOneof("value") is None:
        raise ValueError("the metric carries no value")
    datatype = expected
    if metric.HasField("datatype"):
        try:
            datatype = DataType(metric.datatype)
        except ValueError:
            raise ValueError(f"unknown datatype {metric.datatype}") from None
    member = metric.WhichOneof("value")
    if datatype in _INTEGERS:
        bits, signed = _INTEGERS[datatype]
        field_bits = 64 if member == "long_value" else 32
        if member not in ("int_value", "long_value"):
            raise ValueError(f"datatype {datatype.name} with a {member}")
        number = getattr(metric, member)
        if signed and number >= 2 ** (field_bits - 1):
            number -= 2**field_bits
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if not low <= number <= high:
            raise ValueError(f"{number} is out of the range of {datatype.name}")
        value: Value = number
        allowed = (ValueType.INT, ValueType.FLOAT)
    elif datatype in (DataType.FLOAT, DataType.DOUBLE) and member in ("float_value", "double_value"):
        value, allowed = getattr(metric, member), (ValueType.FLOAT,)
    elif datatype is DataType.BOOLEAN and member == "boolean_value":
        value, allowed = metric.boolean_value, (ValueType.BOOL,)
    elif datatype in (DataType.STRING, DataType.TEXT) and member == "string_value":
        value, allowed = metric.string_value, (ValueType.STR,)
    else:
        raise ValueError(f"datatype {datatype.name} with a {member}")
    if kind not in allowed:
        raise ValueError(f"datatype {datatype.name} does not fit a {kind.value} point")
    return kind.coerce(value)


def _properties(metric: Any, properties: dict[str, str | int]) -> None:
    for key, value in properties.items():
        metric.properties.keys.append(key)
        if isinstance(value, str):
            metric.properties.values.add(type=DataType.STRING, string_value=value)
        else:
            metric.properties.values.add(type=DataType.INT32, int_value=value % 2**32)


@dataclass
class _Born:
    """A device as its last DBIRTH announced it."""

    types: dict[str, DataType]
    at: int  # ms: readings older than this are historical


@dataclass
class _Session:
    """One connection's state: its client, bdSeq, sequence numbers and births."""

    client: Client
    bdseq: int
    seq: int = 0
    node_born: bool = False
    dead: bool = False  # its NDEATH is published
    born: dict[str, _Born] = field(default_factory=dict)
    failure: UplinkError | None = None
    inbox: asyncio.Queue[Command | Rejected | UplinkError] = field(default_factory=asyncio.Queue)
    lifecycle: asyncio.Queue[Event | str] = field(default_factory=asyncio.Queue)
    host_online: asyncio.Event = field(default_factory=asyncio.Event)
    host_ts: int = -1  # the timestamp of the latest STATE taken
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    handed: set[asyncio.Task[None]] = field(default_factory=set)

    def next_seq(self) -> int:
        seq, self.seq = self.seq, (self.seq + 1) % 256
        return seq

    def fail(self, error: UplinkError) -> None:
        if self.failure is None:
            self.failure = error
            self.inbox.put_nowait(error)
            self.ended.set()


Entry = Sequence[Any]  # a stored reading: key, value, ts, quality


class SparkplugLink:
    """The uplink as a Sparkplug B edge node; ``send`` returns once the broker took the message."""

    def __init__(self, config: MqttUplinkConfig, context: LinkContext) -> None:
        assert config.sparkplug is not None, "profile: sparkplug_b needs its sparkplug: section"
        self.config = config
        self.settings = config.sparkplug
        self.gateway_id = context.gateway_id
        self.hub = context.hub
        self.clock = time.time
        self.commands_repeated = 0  # a Sparkplug command comes once
        self.group = self.settings.group_id
        self.node = self.settings.edge_node_id or sparkplug_id(context.gateway_id)
        digest = hashlib.sha256(f"{self.group}/{self.node}".encode()).hexdigest()[:16]
        self.bdseq_path = context.state_dir / BDSEQ_FILE.format(digest=digest)
        self.state_topic = f"{NAMESPACE}/STATE/{self.settings.primary_host_id}" if self.settings.primary_host_id else None
        self._aliases: dict[tuple[str, str], int] = {}
        self._session: _Session | None = None

    # -- topics and aliases ------------------------------------------------

    def node_topic(self, verb: str) -> str:
        return f"{NAMESPACE}/{self.group}/{verb}/{self.node}"

    def device_topic(self, verb: str, device: str) -> str:
        return f"{NAMESPACE}/{self.group}/{verb}/{self.node}/{sparkplug_id(device)}"

    def alias(self, device: str, key: str) -> int:
        """The metric's alias: one number per metric of the node and its devices, kept while edged runs."""
        alias = self._aliases.get((device, key))
        if alias is None:
            alias = self._aliases[(device, key)] = len(self._aliases) + 1
        return alias

    # -- connection ----------------------------------------------------------

    def _next_bdseq(self) -> int:
        """The bdSeq of a new connection attempt, stored before it is used (blocking: run in a thread)."""
        try:
            last = int(self.bdseq_path.read_text())
        except FileNotFoundError:
            last = -1
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s); bdSeq starts again at 0", self.bdseq_path, exc)
            last = -1
        bdseq = (last + 1) % 256
        try:
            write_atomic(self.bdseq_path, str(bdseq).encode())
        except OSError as exc:
            log.error("cannot save %s: %s", self.bdseq_path, exc)
        return bdseq

    def _death(self, bdseq: int) -> bytes:
        payload = Payload(timestamp=_ms(self.clock()))
        payload.metrics.add(name=BDSEQ, datatype=DataType.INT64, long_value=bdseq)
        return payload.SerializeToString()  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        """Connect with NDEATH as the Will, wait for the primary host, publish the births and
        follow the Hub's devices until the block ends; NDEATH on a clean end."""
        bdseq = await asyncio.to_thread(self._next_bdseq)
        will = aiomqtt.Will(self.node_topic("NDEATH"), self._death(bdseq), qos=1, retain=False)
        async with session(self.config, self.gateway_id, will) as client:
            current = _Session(client, bdseq)
            tasks = TaskSet()
            unsubscribe = None
            try:
                topics = [(self.node_topic("NCMD"), 1), (self.node_topic("DCMD") + "/+", 1)]
                if self.state_topic:
                    topics.append((self.state_topic, 1))
                await client.subscribe(topics)
                tasks.spawn(self._receive(current), name="sparkplug receive")
                if self.state_topic:
                    await self._host_online(current)

                def on_event(event: Event) -> None:
                    if isinstance(event, (DeviceAdded, DeviceRemoved, DeviceStatus)):
                        current.lifecycle.put_nowait(event)

                # From here to the births' hand-over nothing waits: no change is missed or seen twice.
                unsubscribe = self.hub.subscribe_events(on_event)
                births = self._births(current)
                self._session = current
                await _acked(births)
                tasks.spawn(self._follow(current), name="sparkplug births")
                yield
            finally:
                self._session = None
                if unsubscribe is not None:
                    unsubscribe()
                if current.node_born and not current.dead:
                    await self._die(current)
                await tasks.close()
                for task in list(current.handed):
                    task.cancel()

    async def _host_online(self, current: _Session) -> None:
        """Wait for the primary host's STATE to say online; ``UplinkError`` if the connection ends first."""
        if not current.host_online.is_set():
            log.info("waiting for the Sparkplug primary host %s to be online", self.settings.primary_host_id)
        while not current.host_online.is_set():  # checked again on waking: the host may have gone meanwhile
            online = asyncio.ensure_future(current.host_online.wait())
            ended = asyncio.ensure_future(current.ended.wait())
            try:
                await asyncio.wait({online, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                online.cancel()
                ended.cancel()
            if current.failure is not None:
                raise current.failure

    async def _die(self, current: _Session) -> None:
        """Publish NDEATH (with this connection's bdSeq) before the connection is ended on purpose."""
        current.dead = True
        with contextlib.suppress(aiomqtt.MqttError, UplinkError, TimeoutError):
            async with asyncio.timeout(2):
                await current.client.publish(self.node_topic("NDEATH"), self._death(current.bdseq), qos=1)

    def _current(self) -> _Session:
        current = self._session
        if current is None:
            raise UplinkError("not connected")
        if current.failure is not None:
            raise current.failure
        return current

    # -- handing messages over -------------------------------------------------

    def _hand(self, current: _Session, topic: str, payload: Any) -> asyncio.Task[None]:
        """Give the message its ``seq`` and hand it to the MQTT client; the task ends with its
        acknowledgement. Tasks start in the order they are made, and a publish reaches the
        client without waiting, so the client sends the messages in ``seq`` order."""
        payload.seq = current.next_seq()
        data = payload.SerializeToString()
        task = asyncio.ensure_future(current.client.publish_checked(topic, data, self.config.qos, PUBLISH_TIMEOUT))
        current.handed.add(task)
        task.add_done_callback(current.handed.discard)
        return task

    def _births(self, current: _Session) -> list[asyncio.Task[None]]:
        """NBIRTH (``seq`` 0) and a DBIRTH per online device, handed over at once."""
        now = _ms(self.clock())
        payload = Payload(timestamp=now)
        node_metrics: list[tuple[str, DataType, Value]] = [
            (BDSEQ, DataType.INT64, current.bdseq), (REBIRTH, DataType.BOOLEAN, False),
            (SOFTWARE, DataType.STRING, f"edged {__version__}"), (LAST_REJECTED, DataType.STRING, ""),
        ]  # fmt: skip
        for name, datatype, value in node_metrics:
            metric = payload.metrics.add(name=name, alias=self.alias(NODE, name), timestamp=now, datatype=datatype)
            put_value(metric, datatype, value)
        current.seq = 0
        current.node_born = True
        current.born.clear()
        tasks = [self._hand(current, self.node_topic("NBIRTH"), payload)]
        for device in list(self.hub.devices.values()):
            if device.online:
                tasks.append(self._device_birth(current, device.id, {}))
        return tasks

    def _device_birth(self, current: _Session, device_id: str, extra: dict[str, Value]) -> asyncio.Task[None]:
        """DBIRTH of a device: its points as the Hub knows them, and the keys of ``extra`` (values of
        points it does not know) with the datatype of their value."""
        now = _ms(self.clock())
        device: Device | None = self.hub.devices.get(device_id)
        points = device.points if device is not None else {}
        payload = Payload(timestamp=now)
        types: dict[str, DataType] = {}
        keys = list(points) + [key for key in extra if key not in points]
        for key in keys:
            point = points.get(key)
            reading = self.hub.value(device_id, key)
            value = reading.value if reading is not None else extra.get(key)
            datatype = DATATYPES[point.type] if point is not None else datatype_of(value)
            types[key] = datatype
            metric = payload.metrics.add(name=key, alias=self.alias(device_id, key), datatype=datatype,
                                         timestamp=_ms(reading.ts) if reading is not None else now)  # fmt: skip
            put_value(metric, datatype, value)
            properties: dict[str, str | int] = {}
            if point is not None and point.unit:
                properties["engUnit"] = point.unit
            if reading is not None and reading.quality in QUALITY:
                properties["Quality"] = QUALITY[Quality(reading.quality)]
            _properties(metric, properties)
        current.born[device_id] = _Born(types, now)
        return self._hand(current, self.device_topic("DBIRTH", device_id), payload)

    def _device_death(self, current: _Session, device_id: str) -> asyncio.Task[None]:
        current.born.pop(device_id, None)
        return self._hand(current, self.device_topic("DDEATH", device_id), Payload(timestamp=_ms(self.clock())))

    def _device_data(self, current: _Session, device_id: str, entries: list[Entry],
                     given: dict[str, str | int] | None = None) -> list[asyncio.Task[None]]:  # fmt: skip
        """DDATA of ``entries`` (with the properties ``given``, a command's answer), after a DBIRTH
        if the device is not born with all their keys, and followed by a DDEATH if it is not online."""
        tasks = []
        born = current.born.get(device_id)
        if born is None or any(entry[0] not in born.types for entry in entries):
            tasks.append(self._device_birth(current, device_id, {entry[0]: entry[1] for entry in entries}))
            born = current.born[device_id]
        payload = Payload(timestamp=_ms(self.clock()))
        add, alias, types = payload.metrics.add, self.alias, born.types
        for key, value, ts, quality in entries:
            stamp = round(ts * 1000)
            metric = add(alias=alias(device_id, key), timestamp=stamp)
            if stamp < born.at:
                metric.is_historical = True
            put_value(metric, types[key], value)
            if quality in QUALITY:
                _properties(metric, {**(given or {}), "Quality": QUALITY[Quality(quality)]})
            elif given:
                _properties(metric, given)
        tasks += [self._hand(current, self.device_topic("DDATA", device_id), part) for part in self._fit(current, payload)]
        device = self.hub.devices.get(device_id)
        if device is None or not device.online:
            tasks.append(self._device_death(current, device_id))
        return tasks

    def _fit(self, current: _Session, payload: Any) -> list[Any]:
        """``payload`` split into messages within the packet size limit, if ``max_message_bytes`` or the broker sets one."""
        limits = [size for size in (self.config.max_message_bytes, current.client.max_packet_size) if size]
        if not limits or payload.ByteSize() + PACKET_ROOM <= min(limits) or len(payload.metrics) < 2:
            return [payload]
        half = len(payload.metrics) // 2
        parts = []
        for metrics in (payload.metrics[:half], payload.metrics[half:]):
            part = Payload(timestamp=payload.timestamp)
            part.metrics.extend(metrics)
            parts += self._fit(current, part)
        return parts

    # -- what the service calls ------------------------------------------------

    async def send(self, row: Row) -> None:
        """Publish one row (as DDATA, or a command's answer) and return once the broker took it."""
        current = self._current()
        if row.kind == READINGS:
            entries: list[Entry] = json.loads(row.payload)
            tasks = self._device_data(current, row.subject, entries) if entries else []
        elif row.subject == "command_result":
            tasks = self._result(current, json.loads(row.payload))
        else:
            return  # device status is told by births and deaths; rule events have no Sparkplug form
        await _acked(tasks)

    def _result(self, current: _Session, result: dict[str, Any]) -> list[asyncio.Task[None]]:
        """The answer to a cloud command: a DDATA of the written metric, or NDATA of a refused message."""
        if result.get("origin") != Origin.CLOUD:
            return []
        device_id, key = result.get("device"), result.get("point")
        device = self.hub.devices.get(device_id) if isinstance(device_id, str) else None
        if device is None or key not in device.points:
            payload = Payload(timestamp=_ms(self.clock()))
            metric = payload.metrics.add(alias=self.alias(NODE, LAST_REJECTED), timestamp=payload.timestamp)
            metric.string_value = f"{result.get('id')}: {result.get('reason') or result.get('status')}"
            return [self._hand(current, self.node_topic("NDATA"), payload)]
        reading = self.hub.value(device.id, key)
        properties: dict[str, str | int] = {}
        if result.get("status") != "ok":
            properties = {"writeStatus": str(result.get("status")), "writeReason": str(result.get("reason") or "")}
        value = reading.value if reading is not None else None
        ts = reading.ts if reading is not None else float(result.get("ts") or self.clock())
        quality = reading.quality if reading is not None else Quality.GOOD
        # A command's answer is news, never history: stamped no earlier than the device's birth.
        born = current.born.get(device.id)
        if born is not None:
            ts = max(ts, born.at / 1000)
        return self._device_data(current, device.id, [(key, value, ts, quality)], properties)

    async def publish_state(self, payload: bytes) -> bool:
        """No place for edged's state digest: a Sparkplug host reads the node's births and data."""
        return False

    async def commands(self) -> AsyncIterator[Command | Rejected]:
        """Every DCMD metric as a command, and every message refused; ``UplinkError`` when the
        connection ends."""
        current = self._current()
        while True:
            item = await current.inbox.get()
            if isinstance(item, UplinkError):
                raise item
            yield item

    # -- what comes in ------------------------------------------------------------

    async def _receive(self, current: _Session) -> None:
        """Take the STATE of the primary host and the commands, until the connection ends."""
        try:
            async for message in current.client.messages:
                topic = str(message.topic)
                payload = message.payload if isinstance(message.payload, (bytes, bytearray)) else b""
                if topic == self.state_topic:
                    await self._state(current, bytes(payload))
                    continue
                try:
                    if topic == self.node_topic("NCMD"):
                        self._node_command(current, bytes(payload))
                    elif topic.startswith(self.node_topic("DCMD") + "/"):
                        self._device_command(current, topic.rpartition("/")[2], bytes(payload))
                except Exception as exc:  # a message from the network never ends the connection
                    log.exception("cannot read the command on %s", topic)
                    current.inbox.put_nowait(Rejected(topic.split("/", 2)[-1], f"cannot read the message: {exc}"))
        except aiomqtt.MqttError as exc:
            current.fail(UplinkError(f"connection lost: {exc}"))
        current.fail(UplinkError("connection closed"))

    async def _state(self, current: _Session, payload: bytes) -> None:
        """The primary host's STATE: online starts the births; offline after them ends the connection."""
        try:
            state = json.loads(payload)
            online, ts = state["online"], state["timestamp"]
            if not isinstance(online, bool) or not isinstance(ts, int) or isinstance(ts, bool):
                raise TypeError("online must be a boolean and timestamp an integer")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning('ignoring a STATE of the primary host that is not {"online": bool, "timestamp": ms}: %s', exc)
            return
        if ts < current.host_ts:
            return  # older than what we know
        current.host_ts = ts
        if online:
            current.host_online.set()
            return
        current.host_online.clear()
        if current.node_born and not current.dead:
            log.warning("the Sparkplug primary host %s went offline; holding data until it is back", self.settings.primary_host_id)
            await self._die(current)
            current.fail(UplinkError(f"primary host {self.settings.primary_host_id} offline"))

    def _node_command(self, current: _Session, data: bytes) -> None:
        payload, reason = _parse(data)
        if payload is not None:
            names = {self.alias(NODE, name): name for name in (BDSEQ, REBIRTH, SOFTWARE, LAST_REJECTED)}
            metrics = [(m.name if m.HasField("name") else names.get(m.alias), m) for m in payload.metrics]
            rebirth = [m for name, m in metrics if name == REBIRTH]
            if not metrics:
                reason = "no metrics"
            elif len(rebirth) != len(metrics):
                reason = f"only {REBIRTH} is taken; got {', '.join(repr(name) for name, _ in metrics if name != REBIRTH)}"
            elif not all(m.WhichOneof("value") == "boolean_value" for m in rebirth):
                reason = f"{REBIRTH} takes a Boolean"
            elif any(m.boolean_value for m in rebirth):
                if current.node_born:
                    current.lifecycle.put_nowait(REBIRTH)
                return
            else:
                return  # Rebirth = false: nothing to do
        current.inbox.put_nowait(Rejected("NCMD", str(reason)))

    def _device_command(self, current: _Session, device_sid: str, data: bytes) -> None:
        """A DCMD: one command per metric, or one refusal for the whole message."""
        raw_id = f"DCMD/{device_sid}"
        device_id = edged_id(device_sid)
        if sparkplug_id(device_id) != device_sid:  # not as edged writes it: no device of the gateway
            current.inbox.put_nowait(Rejected(raw_id, f"unknown device {device_sid!r}"))
            return
        commands, reason = self._read_device_command(current, device_id, data)
        if reason is not None:
            current.inbox.put_nowait(Rejected(raw_id, reason))
            return
        for command in commands:
            current.inbox.put_nowait(command)

    def _read_device_command(self, current: _Session, device_id: str, data: bytes) -> tuple[list[Command], str | None]:
        payload, reason = _parse(data)
        if payload is None:
            return [], reason
        device = self.hub.devices.get(device_id)
        if device is None:
            return [], f"unknown device {device_id!r}"
        if not payload.metrics:
            return [], "no metrics"
        keys = {self.alias(device_id, key): key for key in device.points}
        commands = []
        tag = uuid.uuid4().hex[:12]
        for index, metric in enumerate(payload.metrics):
            key = metric.name if metric.HasField("name") else keys.get(metric.alias) if metric.HasField("alias") else None
            point = device.points.get(key) if key is not None else None
            if key is None or point is None:
                return [], f"unknown metric {key if key is not None else metric.alias!r}"
            born = current.born.get(device_id)
            expected = born.types.get(key, DATATYPES[point.type]) if born is not None else DATATYPES[point.type]
            try:
                value = take_value(metric, point.type, expected)
            except ValueError as exc:
                return [], f"metric {key!r}: {exc}"
            commands.append(Command(device_id, key, value, Origin.CLOUD, id=f"spb-{tag}-{index}"))
        return commands, None

    # -- following the Hub ----------------------------------------------------------

    async def _follow(self, current: _Session) -> None:
        """Births and deaths as devices come and go, and rebirths on request, in the order they happen."""
        while True:
            change = await current.lifecycle.get()
            try:
                await _acked(self._change(current, change))
            except UplinkError as exc:
                current.fail(exc)
                return
            except Exception:
                log.exception("cannot announce %r", change)

    def _change(self, current: _Session, change: Event | str) -> list[asyncio.Task[None]]:
        if change == REBIRTH:
            return self._births(current)
        if isinstance(change, DeviceAdded):
            device_id, online = change.device.id, change.device.online
        elif isinstance(change, DeviceStatus):
            device_id, online = change.device_id, change.online
        elif isinstance(change, DeviceRemoved):
            device_id, online = change.device_id, False
        else:
            return []
        if online and device_id in self.hub.devices:
            return [self._device_birth(current, device_id, {})]
        if device_id in current.born:
            return [self._device_death(current, device_id)]
        return []


def _parse(data: bytes) -> tuple[Any, str | None]:
    """A command message's payload, or None and why it is not one."""
    if len(data) > MAX_COMMAND_BYTES:
        return None, f"message of {len(data)} bytes; at most {MAX_COMMAND_BYTES} are taken"
    try:
        return Payload.FromString(data), None
    except (DecodeError, RecursionError, ValueError) as exc:
        return None, f"bad Sparkplug payload: {exc}"


async def _acked(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Wait for every message's acknowledgement; raise the first failure (as ``UplinkError``)."""
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Refused | UplinkError):
            raise result
        if isinstance(result, aiomqtt.MqttError):
            raise UplinkError(f"publish failed: {result}") from result
        if isinstance(result, asyncio.CancelledError):
            raise UplinkError("disconnected")
        if isinstance(result, BaseException):
            raise result
