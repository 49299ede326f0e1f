"""The status resources over CoAP, read by aiocoap as a client and by
libcoap's coap-client-openssl (a second, independent implementation)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator

import aiocoap
import cbor2
import pytest
from aiocoap.numbers.codes import Code
from aiocoap.numbers.contentformat import ContentFormat

from edged.daemon import Daemon
from edged.status.coap import CoapStatusServer
from tests.status.conftest import StartDaemon


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def coap_daemon(start_daemon: StartDaemon) -> AsyncIterator[tuple[Daemon, str]]:
    port = free_udp_port()
    daemon = await start_daemon(f"  http: {{host: 127.0.0.1, port: 0}}\n  coap: {{enabled: true, port: {port}}}")
    server = CoapStatusServer(daemon.view, daemon.config.status.coap)
    task = asyncio.create_task(server.run())
    async with asyncio.timeout(5):
        await server.listening.wait()
    yield daemon, f"coap://127.0.0.1:{port}"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def client() -> AsyncIterator[aiocoap.Context]:
    context = await aiocoap.Context.create_client_context(transports=["udp6"])
    yield context
    await context.shutdown()


async def get(client: aiocoap.Context, uri: str, accept: int | None = None) -> aiocoap.Message:
    request = aiocoap.Message(code=Code.GET, uri=uri)
    if accept is not None:
        request.opt.accept = accept
    async with asyncio.timeout(5):
        return await client.request(request).response


async def test_resources_answer_in_json_and_cbor(coap_daemon: tuple[Daemon, str], client: aiocoap.Context) -> None:
    _, base = coap_daemon
    health = await get(client, base + "/health")
    assert health.code == Code.CONTENT and health.opt.content_format == ContentFormat.JSON
    assert json.loads(health.payload) == {"status": "ok"}

    status = json.loads((await get(client, base + "/api/status")).payload)
    assert status["gateway"] == "status-test" and status["adapters"]["sim"]["state"] == "running"

    listed = await get(client, base + "/api/devices", accept=ContentFormat.CBOR)
    assert listed.opt.content_format == ContentFormat.CBOR
    assert {d["id"] for d in cbor2.loads(listed.payload)} == {"sim/thermostat", "sim/relay"}

    one = await get(client, base + "/api/devices/sim/thermostat", accept=ContentFormat.CBOR)
    device = cbor2.loads(one.payload)
    assert device["name"] == "Living room" and device["points"]["setpoint"]["writable"] is True

    assert (await get(client, base + "/api/devices/sim/nothing")).code == Code.NOT_FOUND
    assert (await get(client, base + "/health", accept=ContentFormat.TEXT)).code == Code.NOT_ACCEPTABLE

    core = (await get(client, base + "/.well-known/core")).payload.decode()
    for path in ("</health>", "</api/status>", "</api/devices>", "</api/devices/sim/thermostat>"):
        assert path in core
    assert "obs" in core.split("</health>")[1].split(",")[0]


async def test_observing_a_device_delivers_new_values(coap_daemon: tuple[Daemon, str], client: aiocoap.Context) -> None:
    _, base = coap_daemon
    request = aiocoap.Message(code=Code.GET, uri=base + "/api/devices/sim/thermostat", observe=0)
    pending = client.request(request)
    async with asyncio.timeout(5):
        first = await pending.response
    assert first.opt.observe is not None
    initial = json.loads(first.payload)["points"]["temperature"]["ts"]
    # The simulated thermostat publishes every 50 ms; a notification brings a newer reading.
    async with asyncio.timeout(5):
        async for notification in pending.observation:
            if json.loads(notification.payload)["points"]["temperature"]["ts"] != initial:
                break
    pending.observation.cancel()


async def test_observing_health_tells_when_the_gateway_becomes_unhealthy(
    coap_daemon: tuple[Daemon, str], client: aiocoap.Context
) -> None:
    daemon, base = coap_daemon
    pending = client.request(aiocoap.Message(code=Code.GET, uri=base + "/health", observe=0))
    async with asyncio.timeout(5):
        assert json.loads((await pending.response).payload)["status"] == "ok"
    daemon.view.loop_lag = 5.0  # what the daemon's loop monitor records when the loop stalls
    async with asyncio.timeout(5):
        notification = await anext(aiter(pending.observation))
    document = json.loads(notification.payload)
    assert document["status"] == "unhealthy" and "event loop lags" in document["reasons"][0]
    pending.observation.cancel()


@pytest.mark.skipif(shutil.which("coap-client-openssl") is None, reason="libcoap3-bin not installed")
async def test_libcoap_client_reads_the_resources(coap_daemon: tuple[Daemon, str]) -> None:
    _, base = coap_daemon

    async def coap_client(*args: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            "coap-client-openssl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err
        return out

    assert json.loads(await coap_client("-m", "get", base + "/health")) == {"status": "ok"}
    device = cbor2.loads(await coap_client("-m", "get", "-A", "60", base + "/api/devices/sim/relay"))
    assert device["id"] == "sim/relay" and set(device["points"]) == {"relay", "power"}
    core = (await coap_client("-m", "get", base + "/.well-known/core")).decode()
    assert "</api/devices/sim/relay>" in core
