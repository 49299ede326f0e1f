"""A command topic with wildcards, against a real mosquitto: the gateway takes
commands from every topic the filter matches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiomqtt
from pydantic import TypeAdapter

from edged.backoff import Backoff
from edged.hub import Hub
from edged.outbox import OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.uplinks import single
from tests.uplink.peers import Broker, collecting, recording_relay


async def test_a_command_topic_with_a_wildcard_level_takes_commands_on_every_matching_topic(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    writes = recording_relay(hub)
    topics = {"command_topic": "{prefix}/commands/+", "result_topic": "{prefix}/results"}
    config = TypeAdapter(UplinkConfig).validate_python({"type": "mqtt", "host": "127.0.0.1", "port": broker.port, **topics})
    uplink = single(OutboxConfig(), config, hub, tmp_path / "state", "gw1", backoff=Backoff(initial=0.05, maximum=0.5))
    command = {"device": "sim/relay", "point": "on"}
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="cloud") as cloud_client:
        # Retained: delivered when the gateway subscribes, whenever that is.
        await cloud_client.publish("edged/gw1/commands/relay", json.dumps({"id": "a", **command, "value": True}), qos=1, retain=True)
        async with collecting(broker.port, "edged/gw1/results") as cloud:
            running(uplink)
            await cloud.until(lambda: len(cloud.json) == 1)
            await cloud_client.publish("edged/gw1/commands/other", json.dumps({"id": "b", **command, "value": False}), qos=1)
            await cloud.until(lambda: len(cloud.json) == 2)
    assert [(m["id"], m["status"]) for m in cloud.json] == [("a", "ok"), ("b", "ok")]
    assert [c.value for c in writes] == [True, False]
