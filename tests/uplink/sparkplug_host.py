"""A Sparkplug host application for tests: subscribed to ``spBv1.0/#`` on a real
broker, it decodes every message with the schema and records it, and publishes
STATE and commands as a SCADA host would."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from edged.uplink.sparkplug_payload import DataType, Payload
from tests.uplink.peers import subscribed


@dataclass
class Message:
    topic: str
    verb: str  # NBIRTH, DDATA, ... or STATE
    device: str | None  # the Sparkplug device id, for device messages
    payload: Any  # a Payload, or the STATE object


def metric_value(metric: Any) -> Any:
    """A metric's value as Python reads it (Int64 from two's complement)."""
    if metric.is_null:
        return None
    value = getattr(metric, metric.WhichOneof("value"))
    if metric.WhichOneof("value") == "long_value" and value >= 2**63:
        value -= 2**64
    return value


def properties(metric: Any) -> dict[str, Any]:
    found = zip(metric.properties.keys, metric.properties.values, strict=True)
    return {key: getattr(value, value.WhichOneof("value")) for key, value in found}


class Host:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Message] = []
        self.client: aiomqtt.Client | None = None
        self._changed = asyncio.Event()
        self._subscribed = asyncio.Event()

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="scada", max_queued_incoming_messages=0) as client:
            await client.subscribe("spBv1.0/#", qos=1)
            self.client = client
            self._subscribed.set()
            async for message in client.messages:
                self._take(str(message.topic), bytes(message.payload))  # type: ignore[arg-type]

    def _take(self, topic: str, data: bytes) -> None:
        levels = topic.split("/")
        if levels[1] == "STATE":
            self.messages.append(Message(topic, "STATE", None, json.loads(data)))
        elif levels[2] in ("NCMD", "DCMD"):  # what the host itself sends, however malformed
            self.messages.append(Message(topic, levels[2], levels[4] if len(levels) > 4 else None, data))
        else:
            self.messages.append(Message(topic, levels[2], levels[4] if len(levels) > 4 else None, Payload.FromString(data)))
        self._changed.set()

    async def until(self, predicate: Callable[[], object], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def of(self, *verbs: str) -> list[Message]:
        return [m for m in self.messages if m.verb in verbs]

    async def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1, retain=retain)

    async def state(self, host_id: str, online: bool, timestamp: int) -> None:
        await self.publish(f"spBv1.0/STATE/{host_id}", json.dumps({"online": online, "timestamp": timestamp}), retain=True)

    async def command(self, topic: str, *metrics: dict[str, Any]) -> None:
        payload = Payload(timestamp=1)
        for metric in metrics:
            payload.metrics.add(**metric)
        await self.publish(topic, payload.SerializeToString())


def birth_types(message: Message) -> dict[str, DataType]:
    return {m.name: DataType(m.datatype) for m in message.payload.metrics}


def hosting(port: int) -> contextlib.AbstractAsyncContextManager[Host]:
    return subscribed(Host(port))
