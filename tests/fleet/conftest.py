"""A real mosquitto, a real ``edged run`` process and a cloud that watches the gateway's topics."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edged.tasks import wait_until
from tests.daemon_process import DaemonProcess, free_port
from tests.uplink.peers import Broker

GATEWAY = "gw1"
PREFIX = f"edged/{GATEWAY}"


@dataclass
class Signer:
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public(self) -> str:
        return base64.b64encode(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

    def sign(self, text: str) -> str:
        return base64.b64encode(self.key.sign(text.encode())).decode()


def config_text(broker_port: int, http_port: int, *, public_key: str | None = None, devices: int = 1,
                confirm_after: str = "20s", state_interval: str = "60s", extra: str = "") -> str:  # fmt: skip
    """A gateway with ``devices`` simulated devices, an MQTT uplink and remote configuration on."""
    device_lines = "\n".join(f"      - {{id: d{n}, kind: relay}}" for n in range(devices))
    keys = f"  trusted_keys: [{public_key}]" if public_key else "  allow_unsigned: true"
    return f"""gateway:
  id: {GATEWAY}
  state_dir: state
status:
  http: {{port: {http_port}}}
adapters:
  - type: simulated
    name: sim
    interval: 200ms
    devices:
{device_lines}
uplink:
  type: mqtt
  host: 127.0.0.1
  port: {broker_port}
  keepalive: 5
  connect_timeout: 2s
remote_config:
  enabled: true
{keys}
  confirm_after: {confirm_after}
  state_interval: {state_interval}
{extra}"""


class Cloud:
    """An MQTT client on the gateway's topics: pushes configurations, calls operations, reads answers."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, Any, bool]] = []  # topic, decoded payload, retained
        self._changed = asyncio.Event()

    async def read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            try:
                data = json.loads(payload) if isinstance(payload, (bytes, bytearray)) and payload else payload
            except ValueError:
                data = payload
            self.messages.append((str(message.topic), data, bool(message.retain)))
            self._changed.set()

    async def until(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        return await wait_until(self._changed, predicate, timeout)

    def on(self, topic: str) -> list[Any]:
        return [data for seen, data, _ in self.messages if seen == f"{PREFIX}/{topic}"]

    def steps(self, push_id: str) -> list[dict[str, Any]]:
        """The reports on ``push_id``, each once (delivery is at least once: a report sent again
        after a reconnect has the same gen and seq)."""
        seen: dict[tuple[int, int], dict[str, Any]] = {}
        for report in self.on("events/config"):
            if report.get("id") == push_id:
                seen.setdefault((report["gen"], report["seq"]), report)
        return list(seen.values())

    async def step(self, push_id: str, step: str, timeout: float = 20.0) -> dict[str, Any]:
        return await self.until(lambda: next((r for r in self.steps(push_id) if r["step"] == step), None), timeout)  # type: ignore[no-any-return]

    def answer(self, request_id: str) -> dict[str, Any] | None:
        return next((r for r in self.on("commands/result") if r.get("id") == request_id), None)

    async def reached(self, attempts: int = 40) -> None:
        """Wait until the gateway answers a ping: it is connected and takes requests (a request sent
        before it subscribed is not kept by the broker, so the ping is sent again until one is answered)."""
        for attempt in range(attempts):
            message = {"id": f"reach-{attempt}", "device": "$gateway", "point": "ping"}
            await self.client.publish(f"{PREFIX}/commands", json.dumps(message), qos=1)
            with contextlib.suppress(TimeoutError):
                await self.until(lambda: any(str(r.get("id")).startswith("reach-") for r in self.on("commands/result")), 0.5)
                return
        raise TimeoutError("the gateway never answered a ping")

    async def push(self, push_id: str, text: str, signature: str | None = None) -> None:
        document: dict[str, Any] = {"id": push_id, "config": text}
        if signature is not None:
            document["signature"] = signature
        await self.client.publish(f"{PREFIX}/config", json.dumps(document), qos=1)

    async def call(self, request_id: str, method: str, args: Any = None, timeout: float = 20.0) -> dict[str, Any]:
        message: dict[str, Any] = {"id": request_id, "device": "$gateway", "point": method}
        if args is not None:
            message["value"] = args
        await self.client.publish(f"{PREFIX}/commands", json.dumps(message), qos=1)
        return await self.until(lambda: self.answer(request_id), timeout)  # type: ignore[no-any-return]


@pytest.fixture
async def cloud(broker: Broker) -> AsyncIterator[Cloud]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="cloud") as client:
        await client.subscribe(f"{PREFIX}/#", qos=1)
        cloud = Cloud(client)
        reader = asyncio.create_task(cloud.read())
        try:
            yield cloud
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def http_port() -> int:
    return free_port()


@contextlib.asynccontextmanager
async def gateway(config: Path, http_port: int, cloud: Cloud | None = None) -> AsyncIterator[DaemonProcess]:
    """``edged run`` on ``config``, ready and, with a ``cloud``, reached over MQTT."""
    process = DaemonProcess(config, http_port)
    await process.start()
    try:
        await process.wait_notification("READY=1", timeout=20)
        if cloud is not None:
            await cloud.reached()
        yield process
    finally:
        await process.close()
        print("\n".join(process.lines[-60:]))  # shown when a test fails
