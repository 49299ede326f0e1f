"""ThingsBoard's side of the gateway MQTT API for tests: a stand-in that reads what
the gateway publishes under ``v1/gateway/`` and sends RPCs and attribute updates
the way ThingsBoard does, and a gate in front of mosquitto that checks a device
access token the way ThingsBoard does (the MQTT user name, no password), which
mosquitto's own password file cannot (it requires a password)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt

from tests.uplink.peers import free_port


class ThingsBoard:
    """A persistent-session QoS 1 client on ``v1/gateway/#`` and ``v1/devices/me/#``
    that keeps every message and sends what ThingsBoard sends a gateway."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[str, Any]] = []  # (topic, JSON) in the order they came
        self.client: aiomqtt.Client | None = None
        self._changed = asyncio.Event()
        self._subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier="thingsboard", clean_session=False,
                                          max_queued_incoming_messages=0) as client:  # fmt: skip
                    await client.subscribe([("v1/gateway/#", 1), ("v1/devices/me/#", 1)])
                    self.client = client
                    self._subscribed.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        with contextlib.suppress(ValueError, RecursionError):  # it sees what it sends, junk too
                            self.messages.append((str(message.topic), json.loads(message.payload)))
                        self._changed.set()
            except aiomqtt.MqttError:
                self.client = None
                await asyncio.sleep(0.1)  # the broker is down: the test starts it again

    async def until(self, predicate: Callable[[], object], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def on(self, topic: str) -> list[Any]:
        return [payload for t, payload in self.messages if t == topic]

    # -- what the gateway told ------------------------------------------------

    def connected(self) -> dict[str, str]:
        """Device name -> the type (device profile) of its last connect message."""
        return {m["device"]: m.get("type") for m in self.on("v1/gateway/connect")}

    def attributes(self, device: str) -> dict[str, Any]:
        """The client-side attributes of ``device``, merged as ThingsBoard keeps them."""
        merged: dict[str, Any] = {}
        for message in self.on("v1/gateway/attributes"):
            if isinstance(message.get(device), dict):
                merged.update(message[device])
        return merged

    def telemetry(self) -> list[tuple[str, str, Any, int]]:
        """Every (device, key, value, ts in ms) in the order it came."""
        return [
            (device, key, value, entry["ts"])
            for message in self.on("v1/gateway/telemetry")
            for device, entries in message.items()
            for entry in entries
            for key, value in entry["values"].items()
        ]

    def replies(self) -> dict[tuple[str, Any], dict[str, Any]]:
        """(device, request id) -> the data of the gateway's answer."""
        return {(m["device"], m["id"]): m["data"] for m in self.on("v1/gateway/rpc") if "id" in m and "method" not in m["data"]}

    def reply(self, device: str, request_id: Any) -> dict[str, Any] | None:
        return self.replies().get((device, request_id))

    # -- what ThingsBoard sends ------------------------------------------------

    async def publish(self, topic: str, payload: bytes) -> None:
        await self.until(lambda: self.client is not None)
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1)

    async def rpc(self, device: str, request_id: int, method: str, params: Any = None) -> None:
        data: dict[str, Any] = {"id": request_id, "method": method}
        if params is not None:
            data["params"] = params
        await self.publish("v1/gateway/rpc", json.dumps({"device": device, "data": data}).encode())

    async def share(self, device: str, attributes: dict[str, Any]) -> None:
        """A shared attribute update, as ThingsBoard pushes it to the gateway."""
        await self.publish("v1/gateway/attributes", json.dumps({"device": device, "data": attributes}).encode())


@contextlib.asynccontextmanager
async def thingsboard(port: int) -> AsyncIterator[ThingsBoard]:
    peer = ThingsBoard(port)
    task = asyncio.create_task(peer.run())
    try:
        async with asyncio.timeout(10):
            await peer._subscribed.wait()
        yield peer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TokenGate:
    """A TCP front for mosquitto that lets in a client whose MQTT CONNECT carries the
    user name ``token`` and no password, and answers any other "not authorised"."""

    def __init__(self, token: str, upstream: int) -> None:
        self.token = token
        self.upstream = upstream
        self.port = free_port()
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TokenGate:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            packet, body = await _packet(reader)
            user, has_password = _credentials(body)
        except (asyncio.IncompleteReadError, IndexError, ValueError):
            writer.close()
            return
        if user != self.token or has_password:
            self.refused += 1
            writer.write(bytes([0x20, 0x02, 0x00, 0x05]))  # CONNACK (3.1.1): not authorised
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        up_writer.write(packet)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _packet(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One MQTT control packet: all its bytes, and its body after the fixed header."""
    header = await reader.readexactly(1)
    length, shift = 0, 0
    while True:
        byte = await reader.readexactly(1)
        header += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    body = await reader.readexactly(length)
    return header + body, body


def _credentials(body: bytes) -> tuple[str | None, bool]:
    """The user name of a CONNECT packet (MQTT 3.1.1) and whether it has a password."""
    at = 0

    def text() -> bytes:
        nonlocal at
        size = int.from_bytes(body[at : at + 2])
        at += 2 + size
        return body[at - size : at]

    if text() != b"MQTT" or body[at] != 4:
        raise ValueError("not an MQTT 3.1.1 CONNECT")
    flags = body[at + 1]
    at += 4  # protocol level, flags, keep alive
    text()  # client id
    if flags & 0x04:  # a will: its topic and message
        text()
        text()
    user = text().decode() if flags & 0x80 else None
    return user, bool(flags & 0x40)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        sink.close()
