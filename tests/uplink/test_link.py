"""The contract every uplink transport keeps, checked the same way for each
against its real peer (mosquitto, libcoap's coap-server): a link found by
``type``, connected again and again, delivering a row before ``send``
returns, and yielding every command message as a Command or a Rejected."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import aiocoap
import aiomqtt
import cbor2
import pytest
from pydantic import TypeAdapter

from edged.errors import UplinkError
from edged.hub import Hub
from edged.model import Command
from edged.outbox import EVENT, Row
from edged.uplink.commands import Rejected
from edged.uplink.config import CoapUplinkConfig, UplinkConfig
from edged.uplink.link import Link, LinkContext, link_class
from tests.uplink.peers import Broker, CoapServer, coap_config, coap_request, collecting

RULE = Row(id=7, kind=EVENT, subject="rule", count=0, payload=b'{"rule": "r1"}', gen=3)


class MqttCloud:
    """mosquitto, with the gateway's uplink pointed at it."""

    def __init__(self, workdir: Path) -> None:
        self.broker = Broker(workdir)
        self.config: UplinkConfig = TypeAdapter(UplinkConfig).validate_python(
            {"type": "mqtt", "host": "127.0.0.1", "port": self.broker.port}
        )

    async def start(self) -> None:
        self.broker.start()

    async def stop(self) -> None:
        self.broker.stop()

    async def show(self, payload: bytes) -> None:
        """Send a command message, retained: it reaches a link that subscribes later, too."""
        async with aiomqtt.Client("127.0.0.1", self.broker.port, identifier="cloud") as client:
            await client.publish("edged/gw1/commands", payload, qos=1, retain=True)

    async def delivering(self, row: Row, send: Any) -> dict[str, Any]:
        """Send ``row`` and return what the cloud received."""
        async with collecting(self.broker.port, "edged/gw1/events/#") as cloud:
            await send(row)
            await cloud.until(lambda: cloud.json)
            return cloud.json[0]

    async def state(self) -> bytes:
        """The state digest the gateway keeps (retained: a subscriber that comes later reads it)."""
        async with collecting(self.broker.port, "edged/gw1/state") as cloud:
            await cloud.until(lambda: cloud.messages)
            return cloud.messages[0][1]


class CoapCloud:
    """coap-server-openssl, with a command resource the gateway observes."""

    def __init__(self, workdir: Path) -> None:
        self.server = CoapServer(workdir / "coap-server.log")
        self.command_uri = f"coaps://127.0.0.1:{self.server.port}/gw/commands"
        self.state_uri = f"coaps://127.0.0.1:{self.server.port}/gw/state"
        self.config: CoapUplinkConfig = coap_config(self.server.port, command_uri=self.command_uri, state_uri=self.state_uri,
                                                    timeout=10)  # fmt: skip

    async def start(self) -> None:
        await self.server.start()
        await coap_request(self.config, aiocoap.PUT, self.command_uri, b"")

    async def stop(self) -> None:
        await self.server.stop()

    async def show(self, payload: bytes) -> None:
        """Show a command message on the resource (it stays there, as a representation does)."""
        await coap_request(self.config, aiocoap.PUT, self.command_uri, payload)

    async def delivering(self, row: Row, send: Any) -> dict[str, Any]:
        assert self.config.event_uri is not None
        await send(row)
        return cbor2.loads(await coap_request(self.config, aiocoap.GET, self.config.event_uri))  # type: ignore[no-any-return]

    async def state(self) -> bytes:
        return await coap_request(self.config, aiocoap.GET, self.state_uri)


Cloud = MqttCloud | CoapCloud


@pytest.fixture(params=["mqtt", "coap"])
async def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cloud]:
    peer: Cloud = MqttCloud(tmp_path) if request.param == "mqtt" else CoapCloud(tmp_path)
    await peer.start()
    yield peer
    await peer.stop()


def make_link(config: UplinkConfig, tmp_path: Path, hub: Hub) -> Link:
    return link_class(config.type)(config, LinkContext("gw1", tmp_path / "state", hub))


async def test_send_returns_once_the_cloud_has_the_row(cloud: Cloud, tmp_path: Path, hub: Hub) -> None:
    link = make_link(cloud.config, tmp_path, hub)
    for _ in range(2):  # the same link, connected again
        async with link.connect():
            received = await cloud.delivering(RULE, link.send)
        assert (received["gen"], received["seq"], received["rule"]) == (3, 7, "r1")
    with pytest.raises(UplinkError):
        await link.send(RULE)  # not connected


async def test_the_state_digest_is_kept_where_the_cloud_reads_it(cloud: Cloud, tmp_path: Path, hub: Hub) -> None:
    link = make_link(cloud.config, tmp_path, hub)
    digest = b'{"gateway":"gw1","health":{"status":"ok"}}'
    async with link.connect():
        assert await link.publish_state(digest) is True
    assert await cloud.state() == digest


async def test_every_command_message_comes_as_a_command_or_a_rejection(cloud: Cloud, tmp_path: Path, hub: Hub) -> None:
    link = make_link(cloud.config, tmp_path, hub)
    await cloud.show(json.dumps({"id": "c1", "device": "sim/relay", "point": "on", "value": True}).encode())
    async with link.connect():
        messages = aiter(link.commands())
        async with asyncio.timeout(20):
            command = await anext(messages)
            assert isinstance(command, Command)
            assert (command.id, command.device_id, command.key, command.value, command.origin) == (
                "c1", "sim/relay", "on", True, "cloud")  # fmt: skip
            await cloud.show(b'{"id": "c2", "device": "sim/relay", "point": "on"}')
            assert await anext(messages) == Rejected("c2", "missing value")


async def test_a_coap_link_without_a_command_resource_takes_no_commands_and_waits(
    coap_server: CoapServer, tmp_path: Path, hub: Hub
) -> None:
    config = coap_config(coap_server.port, timeout=10)
    assert config.event_uri is not None
    link = make_link(config, tmp_path, hub)
    async with link.connect():
        waiting = asyncio.ensure_future(anext(aiter(link.commands())))
        await link.send(RULE)  # a round trip to the server, while the commands wait
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting


def test_every_uplink_type_has_a_link_and_only_the_configured_one_is_imported() -> None:
    models = [get_args(member)[0] for member in get_args(get_args(UplinkConfig)[0])]
    types = [get_args(model.model_fields["type"].annotation)[0] for model in models]
    probe = (
        "import sys; from edged.uplink.link import link_class; import edged.uplink.config; "
        "before = {'aiomqtt', 'aiocoap'} & set(sys.modules); "
        "cls = link_class(sys.argv[1]); "
        "print(sorted(before), cls.__name__, sorted({'aiomqtt', 'aiocoap'} & set(sys.modules)))"
    )
    found = {}
    for type_ in types:
        out = subprocess.run([sys.executable, "-c", probe, type_], capture_output=True, text=True, check=True).stdout
        found[type_] = out.split()
    assert found == {
        "mqtt": ["[]", "MqttLink", "['aiomqtt']"],
        "coap": ["[]", "CoapLink", "['aiocoap']"],
    }
