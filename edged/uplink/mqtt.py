"""MQTT uplink (aiomqtt): publishes outbox rows as JSON with QoS 1 and takes
cloud commands from a command topic.

Messages (``gen`` and ``seq`` are the outbox generation and row id; with
the gateway id, and ``part`` for a split message, they are the key the cloud
drops duplicates by):

- readings, one message per device per commit, on ``topic``::

    {"gateway": "gw1", "device": "modbus/boiler", "gen": 3, "seq": 42,
     "readings": [["temperature", 21.5, 1767225600.25, 0], ...]}

  each reading being ``[point, value, ts (UTC epoch s), quality (0 good,
  1 uncertain, 2 bad)]``; with ``{point}`` in ``topic``, one message per
  reading: ``{"gen": 3, "seq": 42, "value": 21.5, "ts": ..., "quality": 0}``.
  A message larger than the broker's Maximum Packet Size (MQTT 5) or
  ``max_message_bytes`` is split into ``"parts": n`` messages, each with its
  ``"part"`` (0 .. n-1) and a share of the readings.
- events on ``event_topic`` (``{event}`` = ``device_status`` or ``rule``),
  command results on ``result_topic``: ``{"gen": 3, "seq": 43, ...the event...}``.

With MQTT 5, a PUBACK (or PUBREC/PUBCOMP) whose reason code is 0x80 or more
is a refusal, not a delivery: the message stays in the outbox (``Refused``).
MQTT 3.1.1 has no way to say so: a broker acknowledges a publish its ACL
denies like any other, and drops it.
- A message stored before the system clock was synchronised carries
  ``"clock": "unsynced"`` after ``seq``: its timestamps may be wrong (see
  ``edged.clock``).
- ``status_topic``: retained ``online`` after connecting; ``offline`` as the
  Last Will and on a clean stop.
- commands arrive on ``command_topic``:
  ``{"id": "c1", "device": "sim/relay", "point": "on", "value": true}``.
- with ``homeassistant:``, the discovery configs of every device's points
  (see ``homeassistant``), announced on every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.errors import Refused, UplinkError
from edged.model import Command
from edged.outbox import EVENT, Row
from edged.uplink import homeassistant
from edged.uplink.commands import GatewayRequest, Rejected, parse_command
from edged.uplink.config import MqttUplinkConfig
from edged.uplink.link import LinkContext

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 60.0  # a message not acknowledged within this fails the connection
SESSION_EXPIRY = 7 * 86400  # seconds the broker keeps a persistent MQTT 5 session (clean_session: false)
PACKET_OVERHEAD = 16  # bytes of a PUBLISH packet besides its topic and payload (header, packet id, properties)
# MQTT 5 reason codes that will be given again however often the message is sent.
PERMANENT = {0x90: "topic name invalid", 0x95: "packet too large", 0x99: "payload format invalid"}


class Client(aiomqtt.Client):
    """aiomqtt's client, also telling what the broker answered: the reason code of
    each acknowledgement and the limits of its CONNACK (MQTT 5)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_packet_size: int | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}  # message id -> its acknowledgement's reason code

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        size = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
        self.max_packet_size = size if isinstance(size, int) and size > 0 else None
        super()._on_connect(client, userdata, flags, reason_code, properties)

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._disconnected.done() and not self._disconnected.cancelled():
            self._disconnected.exception()  # the lost connection was already reported by the call that met it
        await super().__aexit__(*exc_info)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        ack = self._acks.pop(mid, None)
        if ack is None:
            super()._on_publish(client, userdata, mid, reason_code, properties)
        elif not ack.done():
            ack.set_result(reason_code)

    async def publish_checked(self, topic: str, payload: bytes | str, qos: int, timeout: float) -> None:
        """Publish and wait for the acknowledgement; raise ``Refused`` when its reason code says no.

        One future per message, resolved by the acknowledgement itself: no task, event or
        scan of the other pending calls per message, which at thousands of messages a second
        would cost more than sending them."""
        async with self._outgoing_calls_sem or contextlib.nullcontext():
            info = self._client.publish(topic, payload, qos)
            if info.rc != 0:
                raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
            if info.is_published():
                return
            ack = asyncio.get_running_loop().create_future()
            self._acks[info.mid] = ack
            try:
                async with asyncio.timeout(timeout):
                    reason = await ack
            except TimeoutError:
                raise aiomqtt.MqttError("Operation timed out") from None
            finally:
                self._acks.pop(info.mid, None)
        code = getattr(reason, "value", 0)
        if code >= 0x80:
            raise Refused(topic, f"{reason} (0x{code:02X})", permanent=code in PERMANENT)


class MqttLink:
    """The uplink to an MQTT broker; ``send`` returns once the broker acknowledged."""

    def __init__(self, config: MqttUplinkConfig, context: LinkContext) -> None:
        self.config = config
        self.gateway_id = context.gateway_id
        self.client: aiomqtt.Client | None = None  # while connected
        self.max_packet: int | None = None  # bytes a PUBLISH packet may have, while connected
        self.commands_repeated = 0  # a command message on a topic comes once: never a repeat
        prefix = config.prefix.format(gateway=context.gateway_id)
        self._names = {"prefix": prefix, "gateway": context.gateway_id}
        self._gateway = json.dumps(context.gateway_id).encode()
        self._per_point = "{point}" in config.topic
        self._topics: dict[tuple[str, str], str] = {}
        self.result_topic = config.result_topic.format(**self._names)
        self.status_topic = config.status_topic.format(**self._names)
        self.command_topic = config.command_topic.format(**self._names)
        # fleet (docs/fleet.md): configurations pushed to the gateway, and its retained state digest
        self.config_topic = f"{prefix}/config"
        self.state_topic = f"{prefix}/state"
        ha = config.homeassistant
        self.announcer = None if ha is None else homeassistant.Announcer(ha, context.gateway_id, context.hub, self)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        """Connect, announce ``online`` (retained) and, with ``homeassistant:``, the devices; always disconnect."""
        async with _connected(self.config, self.gateway_id, self.status_topic) as client:
            self.client = client
            limits = [size for size in (self.config.max_message_bytes, getattr(client, "max_packet_size", None)) if size]
            self.max_packet = min(limits) if limits else None
            try:
                if self.announcer is None:
                    yield
                else:
                    async with self.announcer.announcing(self.retain):
                        yield
            finally:
                self.client = None

    def topic(self, device: str, point: str = "") -> str:
        topic = self._topics.get((device, point))
        if topic is None:
            topic = self.config.topic.format(**self._names, device=_level(device), point=_level(point))
            self._topics[(device, point)] = topic
        return topic

    async def send(self, row: Row) -> None:
        """Publish one row and return once the broker took it; ``Refused`` if it said no."""
        try:
            if row.kind == EVENT:
                topic = self.result_topic if row.subject == "command_result" else self._event_topic(row.subject)
                await self._publish(topic, b'{"gen":%d,"seq":%d,%s' % (row.gen, row.id, _mark(row)) + row.payload[1:])
            elif self._per_point:
                await asyncio.gather(
                    *(
                        self._publish(
                            self.topic(row.subject, key),
                            json.dumps({"gen": row.gen, "seq": row.id, **_CLOCK[row.unsynced], "value": value, "ts": ts,
                                        "quality": quality}),
                        )
                        for key, value, ts, quality in json.loads(row.payload)
                    )
                )
            else:
                device = json.dumps(row.subject).encode()
                head = b'{"gateway":%s,"device":%s,"gen":%d,"seq":%d,%s' % (self._gateway, device, row.gen, row.id, _mark(row))
                topic = self.topic(row.subject)
                room = self._room(topic)
                if room is None or len(head) + len(row.payload) + 12 <= room:
                    await self._publish(topic, head + b'"readings":' + row.payload + b"}")
                else:
                    parts = _split(json.loads(row.payload), room - len(head) - 48)
                    for index, part in enumerate(parts):  # in order: a cloud may join them as they come
                        await self._publish(topic, head + b'"part":%d,"parts":%d,"readings":%s}' % (index, len(parts), part))
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"publish failed: {exc}") from exc

    def _room(self, topic: str) -> int | None:
        """Bytes a payload on ``topic`` may have, if the broker or the configuration sets a limit."""
        if self.max_packet is None:
            return None
        return self.max_packet - len(topic.encode()) - PACKET_OVERHEAD

    def device_status_topic(self, device: str) -> str:
        """Where a device's ``online``/``offline`` is kept (retained) for Home Assistant."""
        return f"{self.status_topic}/{_level(device)}"

    async def retain(self, messages: Iterable[homeassistant.Message]) -> None:
        """Publish retained messages (QoS 1), ``inflight`` at a time; an empty payload clears one."""
        client = self._client()
        pending = list(messages)
        try:
            for start in range(0, len(pending), self.config.inflight):
                await asyncio.gather(*(
                    client.publish(topic, payload, qos=1, retain=True, timeout=PUBLISH_TIMEOUT)
                    for topic, payload in pending[start : start + self.config.inflight]
                ))  # fmt: skip
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"publish failed: {exc}") from exc

    def _event_topic(self, event: str) -> str:
        return self.config.event_topic.format(**self._names, event=_level(event))

    async def _publish(self, topic: str, payload: bytes | str) -> None:
        room = self._room(topic)
        if room is not None and len(payload) > room:
            raise Refused(topic, f"a message of {len(payload)} bytes does not fit in a packet of {self.max_packet} bytes",
                          permanent=True, final=True)  # fmt: skip
        client = self.client
        if isinstance(client, Client):
            await client.publish_checked(topic, payload, self.config.qos, PUBLISH_TIMEOUT)
        else:
            await self._client().publish(topic, payload, qos=self.config.qos, timeout=PUBLISH_TIMEOUT)

    async def commands(self) -> AsyncIterator[Command | GatewayRequest | Rejected]:
        """Every message on ``command_topic``, parsed, and every configuration pushed on
        ``config_topic`` (as a ``GatewayRequest`` "config"); ``UplinkError`` when disconnected."""
        client = self._client()
        try:
            await client.subscribe([(self.command_topic, 1), (self.config_topic, 1)])
            async for message in client.messages:
                if message.topic.matches(self.config_topic):
                    payload = message.payload
                    yield GatewayRequest(None, "config", bytes(payload) if isinstance(payload, (bytes, bytearray)) else payload)
                else:
                    yield parse_command(message.payload)
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"connection lost: {exc}") from exc

    async def publish_state(self, payload: bytes) -> bool:
        """Publish the gateway's state digest, retained, on ``state_topic`` (edged.fleet)."""
        await self.retain([(self.state_topic, payload.decode())])
        return True

    def _client(self) -> aiomqtt.Client:
        if self.client is None:
            raise UplinkError("not connected")
        return self.client


_CLOCK: dict[bool, dict[str, str]] = {False: {}, True: {"clock": "unsynced"}}


def _mark(row: Row) -> bytes:
    """The clock mark of a message, with its comma (or nothing)."""
    return b'"clock":"unsynced",' if row.unsynced else b""


def _split(readings: list[Any], room: int) -> list[bytes]:
    """JSON arrays of consecutive readings, each at most ``room`` bytes where a single reading allows."""
    parts: list[bytes] = []
    current: list[bytes] = []
    size = 2
    for reading in readings:
        item = json.dumps(reading, separators=(",", ":")).encode()
        if current and size + len(item) + 1 > room:
            parts.append(b"[" + b",".join(current) + b"]")
            current, size = [], 2
        current.append(item)
        size += len(item) + 1
    if current:
        parts.append(b"[" + b",".join(current) + b"]")
    return parts


def _level(name: str) -> str:
    """A device id or point key as topic levels: MQTT wildcards cannot appear in a topic."""
    return name.replace("+", "_").replace("#", "_")


async def tls_context(config: MqttUplinkConfig) -> ssl.SSLContext | None:
    tls = config.tls
    if tls is None:
        return None

    def build() -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
        if tls.cert and tls.key:
            context.load_cert_chain(str(tls.cert), str(tls.key))
        if tls.insecure:
            context.check_hostname = False
        return context

    try:
        return await asyncio.to_thread(build)  # reads files: not on the loop
    except (OSError, ssl.SSLError) as exc:
        raise UplinkError(f"TLS setup failed: {exc}") from exc


@contextlib.asynccontextmanager
async def session(config: MqttUplinkConfig, identifier: str, will: aiomqtt.Will | None) -> AsyncIterator[Client]:
    """A client connected to the broker as ``config`` says (TLS, protocol, session, inflight
    window), with ``will`` as its Last Will; always disconnected. Every MQTT profile connects so."""
    v5 = config.protocol == "5"
    properties = None
    if v5 and not config.clean_session:
        # MQTT 5 ends a session at disconnect unless it is given an expiry: keep it (and its queued commands).
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY
    client = Client(
        config.host,
        config.port,
        identifier=config.client_id or identifier,
        username=config.username.get_secret_value() if config.username else None,
        password=config.password.get_secret_value() if config.password else None,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        will=will,
        clean_session=None if v5 else config.clean_session,
        clean_start=config.clean_session if v5 else MQTT_CLEAN_START_FIRST_ONLY,
        keepalive=max(1, math.ceil(config.keepalive)),
        timeout=config.connect_timeout,
        max_inflight_messages=config.inflight,
        tls_context=await tls_context(config),
        properties=properties,
        logger=log,
    )
    client.pending_calls_threshold = config.inflight + 16
    try:
        async with client:
            log.info("connected to mqtt://%s:%d", config.host, config.port)
            yield client
    except aiomqtt.MqttError as exc:
        raise UplinkError(f"mqtt://{config.host}:{config.port}: {exc}") from exc


@contextlib.asynccontextmanager
async def _connected(config: MqttUplinkConfig, gateway_id: str, status_topic: str) -> AsyncIterator[Client]:
    """A session with ``online`` (retained) on ``status_topic``, and ``offline`` as its Last
    Will and on a clean stop."""
    async with session(config, gateway_id, aiomqtt.Will(status_topic, "offline", qos=1, retain=True)) as client:
        try:
            await client.publish(status_topic, "online", qos=1, retain=True)
            yield client
        finally:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(2):
                    await client.publish(status_topic, "offline", qos=1, retain=True)
