"""MQTT uplink (aiomqtt): publishes outbox rows as JSON with QoS 1 and takes
cloud commands from a command topic.

Messages (``seq`` is the outbox row id, the message id the cloud uses to
drop duplicates):

- readings, one message per device per commit, on ``topic``::

    {"gateway": "gw1", "device": "modbus/boiler", "seq": 42,
     "readings": [["temperature", 21.5, 1767225600.25, 0], ...]}

  each reading being ``[point, value, ts (UTC epoch s), quality (0 good,
  1 uncertain, 2 bad)]``; with ``{point}`` in ``topic``, one message per
  reading: ``{"seq": 42, "value": 21.5, "ts": ..., "quality": 0}``.
- events on ``event_topic`` (``{event}`` = ``device_status`` or ``rule``),
  command results on ``result_topic``: ``{"seq": 43, ...the event...}``.
- ``status_topic``: retained ``online`` after connecting; ``offline`` as the
  Last Will and on a clean stop.
- commands arrive on ``command_topic``:
  ``{"id": "c1", "device": "sim/relay", "point": "on", "value": true}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.errors import UplinkError
from edged.model import Command, Device
from edged.outbox import EVENT, Row
from edged.uplink import homeassistant
from edged.uplink.commands import parse_command
from edged.uplink.config import MqttUplinkConfig

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 60.0  # a message not acknowledged within this fails the connection
SESSION_EXPIRY = 7 * 86400  # seconds the broker keeps a persistent MQTT 5 session (clean_session: false)


class MqttLink:
    """One connection to the broker; ``send`` returns once the broker acknowledged."""

    def __init__(self, config: MqttUplinkConfig, gateway_id: str, client: aiomqtt.Client) -> None:
        self.config = config
        self.client = client
        prefix = config.prefix.format(gateway=gateway_id)
        self._names = {"prefix": prefix, "gateway": gateway_id}
        self._gateway = json.dumps(gateway_id).encode()
        self._per_point = "{point}" in config.topic
        self._topics: dict[tuple[str, str], str] = {}
        self.result_topic = config.result_topic.format(**self._names)
        self.status_topic = config.status_topic.format(**self._names)
        self.command_topic = config.command_topic.format(**self._names)

    def topic(self, device: str, point: str = "") -> str:
        topic = self._topics.get((device, point))
        if topic is None:
            topic = self.config.topic.format(**self._names, device=_level(device), point=_level(point))
            self._topics[(device, point)] = topic
        return topic

    async def send(self, row: Row) -> None:
        try:
            if row.kind == EVENT:
                topic = self.result_topic if row.subject == "command_result" else self._event_topic(row.subject)
                await self._publish(topic, b'{"seq":%d,' % row.id + row.payload[1:])
            elif self._per_point:
                await asyncio.gather(
                    *(
                        self._publish(
                            self.topic(row.subject, key),
                            json.dumps({"seq": row.id, "value": value, "ts": ts, "quality": quality}),
                        )
                        for key, value, ts, quality in json.loads(row.payload)
                    )
                )
            else:
                device = json.dumps(row.subject).encode()
                head = b'{"gateway":%s,"device":%s,"seq":%d,"readings":' % (self._gateway, device, row.id)
                await self._publish(self.topic(row.subject), head + row.payload + b"}")
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"publish failed: {exc}") from exc

    def discovery(self, device: Device | None = None) -> list[homeassistant.Message]:
        """The Home Assistant discovery configs of ``device``'s points, or of the gateway itself."""
        ha = self.config.homeassistant
        assert ha is not None
        gateway = self._names["gateway"]
        if device is None:
            return [homeassistant.gateway_entity(ha.discovery_prefix, gateway, self.status_topic)]
        return homeassistant.announce(ha.discovery_prefix, gateway, device, self.topic, self.status_topic,
                                      self.device_status_topic(device.id), self.command_topic)  # fmt: skip

    def device_status_topic(self, device: str) -> str:
        """Where a device's ``online``/``offline`` is kept (retained) for Home Assistant."""
        return f"{self.status_topic}/{_level(device)}"

    async def retain(self, messages: Iterable[homeassistant.Message]) -> None:
        """Publish retained messages (QoS 1), ``inflight`` at a time; an empty payload clears one."""
        pending = list(messages)
        try:
            for start in range(0, len(pending), self.config.inflight):
                await asyncio.gather(*(
                    self.client.publish(topic, payload, qos=1, retain=True, timeout=PUBLISH_TIMEOUT)
                    for topic, payload in pending[start : start + self.config.inflight]
                ))  # fmt: skip
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"publish failed: {exc}") from exc

    def _event_topic(self, event: str) -> str:
        return self.config.event_topic.format(**self._names, event=_level(event))

    async def _publish(self, topic: str, payload: bytes | str) -> None:
        await self.client.publish(topic, payload, qos=self.config.qos, timeout=PUBLISH_TIMEOUT)

    async def commands(self, handle: Callable[[Command | None, str | None, Any], None]) -> None:
        """Hand every command message to ``handle(command, error, raw_id)``; raise when disconnected."""
        try:
            await self.client.subscribe(self.command_topic, qos=1)
            async for message in self.client.messages:
                command, error, raw_id = parse_command(message.payload)
                handle(command, error, raw_id)
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"connection lost: {exc}") from exc


def _level(name: str) -> str:
    """A device id or point key as topic levels: MQTT wildcards cannot appear in a topic."""
    return name.replace("+", "_").replace("#", "_")


async def _tls_context(config: MqttUplinkConfig) -> ssl.SSLContext | None:
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
async def connect(config: MqttUplinkConfig, gateway_id: str) -> AsyncIterator[MqttLink]:
    """Connect, announce ``online`` (retained) and yield the link; always disconnect."""
    prefix = config.prefix.format(gateway=gateway_id)
    status_topic = config.status_topic.format(prefix=prefix, gateway=gateway_id)
    v5 = config.protocol == "5"
    properties = None
    if v5 and not config.clean_session:
        # MQTT 5 ends a session at disconnect unless it is given an expiry: keep it (and its queued commands).
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = SESSION_EXPIRY
    client = aiomqtt.Client(
        config.host,
        config.port,
        identifier=config.client_id or gateway_id,
        username=config.username,
        password=config.password.get_secret_value() if config.password else None,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        will=aiomqtt.Will(status_topic, "offline", qos=1, retain=True),
        clean_session=None if v5 else config.clean_session,
        clean_start=config.clean_session if v5 else MQTT_CLEAN_START_FIRST_ONLY,
        keepalive=max(1, math.ceil(config.keepalive)),
        timeout=config.connect_timeout,
        max_inflight_messages=config.inflight,
        tls_context=await _tls_context(config),
        properties=properties,
        logger=log,
    )
    client.pending_calls_threshold = config.inflight + 16
    try:
        async with client:
            try:
                await client.publish(status_topic, "online", qos=1, retain=True)
                log.info("connected to mqtt://%s:%d", config.host, config.port)
                yield MqttLink(config, gateway_id, client)
            finally:
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    async with asyncio.timeout(2):
                        await client.publish(status_topic, "offline", qos=1, retain=True)
    except aiomqtt.MqttError as exc:
        raise UplinkError(f"mqtt://{config.host}:{config.port}: {exc}") from exc
