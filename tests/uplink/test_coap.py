"""CoAP uplink against libcoap's coap-server-openssl with a DTLS pre-shared key
(``CoapServer`` in peers.py): a GET after the gateway's POST proves what the
server stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiocoap
import cbor2

from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import Quality, Reading
from edged.outbox import OutboxConfig
from edged.uplink import senml
from edged.uplink.coap import credentials
from edged.uplink.uplinks import single
from tests.uplink.peers import CoapServer, coap_client, coap_config, coap_request, recording_relay


async def test_readings_are_posted_as_senml_cbor_over_dtls_psk_and_acknowledged(
    tmp_path: Path, hub: Hub, coap_server: CoapServer, running: Any
) -> None:
    # One POST at a time, so the server keeps the last row; a timeout with room for a busy machine.
    config = coap_config(coap_server.port, inflight=1, timeout=10)
    # Create the resources first: the example server's handler for unknown paths takes no block-wise bodies.
    await coap_request(config, aiocoap.PUT, config.uri, b"-")
    uplink = single(OutboxConfig(row_readings=50), config, hub, tmp_path / "state", "gw1")
    running(uplink)
    await uplink.wait_for(lambda: uplink.connected, 10)
    hub.publish([Reading("sim/a", "temperature", 20.0 + i, 1000.0 + i) for i in range(120)])
    last = [Reading("sim/b", "power", float(i), 1999.0) for i in range(48)]
    last += [Reading("sim/b", "on", True, 2000.0), Reading("sim/b", "mode", "eco", 2000.5, Quality.UNCERTAIN)]
    hub.publish(last)
    await uplink.wait_for(lambda: uplink.outbox.acked == 170, 20)
    assert uplink.outbox.depth == 0

    payload = await coap_request(config, aiocoap.GET, config.uri)  # the last pack the server kept
    assert len(payload) > 1024, "large enough to need block-wise transfer"
    stored = cbor2.loads(payload)
    assert len(stored) == 50
    assert senml.resolve(stored)[-2:] == [("gw1/sim/b/on", True, 2000.0), ("gw1/sim/b/mode", "eco", 2000.5)]
    assert stored[-1]["q"] == Quality.UNCERTAIN
    assert stored[0]["seq"] > 0


async def test_a_wrong_key_delivers_nothing_and_keeps_everything(
    tmp_path: Path, hub: Hub, coap_server: CoapServer, running: Any
) -> None:
    uplink = single(
        OutboxConfig(), coap_config(coap_server.port, psk="not-the-key"), hub, tmp_path / "state", "gw1",
        backoff=Backoff(initial=0.05, maximum=0.2),
    )
    running(uplink)
    await uplink.wait_for(lambda: uplink.outbox.is_open, 10)
    hub.publish([Reading("sim/a", "temperature", 20.0, 1000.0)])
    await uplink.wait_for(lambda: uplink.reconnects >= 1, 20)
    assert uplink.stats().acked == 0
    assert uplink.outbox.depth == 1


async def test_a_server_outage_loses_nothing(tmp_path: Path, hub: Hub, coap_server: CoapServer, running: Any) -> None:
    # Small rows: after its restart the server's handler for new paths takes no block-wise bodies.
    uplink = single(
        OutboxConfig(row_readings=20), coap_config(coap_server.port), hub, tmp_path / "state", "gw1",
        backoff=Backoff(initial=0.05, maximum=0.3),
    )
    running(uplink)
    await uplink.wait_for(lambda: uplink.connected, 10)
    hub.publish([Reading("sim/a", "n", i, 1000.0 + i) for i in range(20)])
    await uplink.wait_for(lambda: uplink.outbox.acked == 20, 10)
    await coap_server.stop()
    hub.publish([Reading("sim/a", "n", i, 1000.0 + i) for i in range(20, 100)])
    await uplink.wait_for(lambda: uplink.reconnects >= 1, 20)
    assert uplink.outbox.depth == 80
    await coap_server.start()
    await uplink.wait_for(lambda: uplink.outbox.depth == 0, 30)
    assert uplink.outbox.acked == 100


async def test_cloud_commands_are_observed_executed_once_and_answered(
    tmp_path: Path, hub: Hub, watch: Any, coap_server: CoapServer, running: Any
) -> None:
    writes = recording_relay(hub)
    base = f"coaps://127.0.0.1:{coap_server.port}/gw"
    config = coap_config(coap_server.port, inflight=1, command_uri=f"{base}/commands", result_uri=f"{base}/results")
    command_uri, result_uri = f"{base}/commands", f"{base}/results"

    # Waiting on the server before the gateway connects: a command in CBOR.
    c1 = {"id": "c1", "device": "sim/relay", "point": "on", "value": True}
    await coap_request(config, aiocoap.PUT, command_uri, cbor2.dumps(c1), content_format=60)
    await coap_request(config, aiocoap.PUT, result_uri, b"")
    async with coap_client(config) as context:
        observed = context.request(aiocoap.Message(code=aiocoap.GET, uri=result_uri, observe=0))
        await observed.response
        results = aiter(observed.observation)

        async def next_result() -> dict[str, Any]:
            async with asyncio.timeout(20):
                return cbor2.loads((await anext(results)).payload)

        running(single(OutboxConfig(), config, hub, tmp_path / "state", "gw1"))
        result = await next_result()
        assert (result["type"], result["id"], result["status"]) == ("command_result", "c1", "ok")
        assert [(c.id, c.value, c.origin) for c in writes] == [("c1", True, "cloud")]

        # Then one in JSON, a message that is not a command, and one for a device that does not exist.
        c2 = {"id": "c2", "device": "sim/relay", "point": "on", "value": False}
        await coap_request(config, aiocoap.PUT, command_uri, json.dumps(c2).encode(), content_format=50)
        assert (await next_result())["id"] == "c2"
        await coap_request(config, aiocoap.PUT, command_uri, b"{not json")
        rejected = await next_result()
        assert (rejected["id"], rejected["status"]) == (None, "rejected")
        assert "bad JSON" in rejected["reason"]
        c3 = {"id": "c3", "device": "sim/nothing", "point": "on", "value": True}
        await coap_request(config, aiocoap.PUT, command_uri, json.dumps(c3).encode())
        rejected = await next_result()
        assert (rejected["id"], rejected["status"]) == ("c3", "rejected")
        assert "unknown device" in rejected["reason"]
        observed.observation.cancel()
    assert [(c.id, c.value) for c in writes] == [("c1", True), ("c2", False)]


async def test_a_command_already_taken_is_not_run_again_after_a_restart(
    tmp_path: Path, hub: Hub, watch: Any, coap_server: CoapServer, running: Any
) -> None:
    writes = recording_relay(hub)
    command_uri = f"coaps://127.0.0.1:{coap_server.port}/gw/commands"
    config = coap_config(coap_server.port, command_uri=command_uri)
    toggle = {"id": "t1", "device": "sim/relay", "point": "on", "value": True}
    await coap_request(config, aiocoap.PUT, command_uri, json.dumps(toggle).encode())

    first = running(single(OutboxConfig(), config, hub, tmp_path / "state", "gw1"))
    await watch.until(lambda: writes)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)

    # The resource still shows t1 to the restarted gateway: recognised, not run again.
    second = single(OutboxConfig(), config, hub, tmp_path / "state", "gw1")
    running(second)
    await second.wait_for(lambda: second.stats().commands_repeated == 1, 20)
    toggle2 = {"id": "t2", "device": "sim/relay", "point": "on", "value": False}
    await coap_request(config, aiocoap.PUT, command_uri, json.dumps(toggle2).encode())
    await watch.until(lambda: len(writes) == 2)
    assert [c.id for c in writes] == ["t1", "t2"]


def test_the_psk_is_offered_to_every_configured_server() -> None:
    config = coap_config(5684, command_uri="coaps://127.0.0.2:5700/cmd", result_uri="coaps://127.0.0.3/res")
    assert set(credentials(config)) == {
        "coaps://127.0.0.1:5684/*", "coaps://127.0.0.2:5700/*", "coaps://127.0.0.3/*",
    }  # fmt: skip


async def test_readings_flow_while_the_command_resource_does_not_exist_yet(
    tmp_path: Path, hub: Hub, coap_server: CoapServer, running: Any
) -> None:
    missing = f"coaps://127.0.0.1:{coap_server.port}/gw/no-commands-yet"
    uplink = single(OutboxConfig(), coap_config(coap_server.port, command_uri=missing), hub, tmp_path / "state", "gw1")
    running(uplink)
    await uplink.wait_for(lambda: uplink.connected, 10)
    hub.publish([Reading("sim/a", "n", i, 1000.0 + i) for i in range(10)])
    await uplink.wait_for(lambda: uplink.outbox.acked == 10, 20)
    assert uplink.reconnects == 0


async def test_a_post_refused_with_4xx_goes_to_the_dead_letters_and_the_rest_flows_on(
    tmp_path: Path, hub: Hub, coap_server: CoapServer, running: Any
) -> None:
    # The server's root resource answers POST with 4.05 Method Not Allowed: a refusal for good.
    config = coap_config(coap_server.port, uri=f"coaps://127.0.0.1:{coap_server.port}/", max_attempts=2, timeout=10)
    await coap_request(config, aiocoap.PUT, config.event_uri, b"-")
    uplink = single(OutboxConfig(), config, hub, tmp_path / "state", "gw1", backoff=Backoff(initial=0.05, maximum=0.2))
    running(uplink)
    await uplink.wait_for(lambda: uplink.connected, 10)
    hub.publish([Reading("sim/a", "temperature", 20.0, 1000.0)])
    await uplink.wait_for(lambda: uplink.outbox.dead_letters == 1, 20)
    uplink.outbox.put_event("rule", {"rule": "r1"})
    await uplink.wait_for(lambda: uplink.outbox.acked == 1, 20)
    (letter,) = await uplink.outbox.list_dead_letters()
    assert "4.05" in letter.reason and letter.subject == "sim/a"
    assert sum(uplink.stats().refused.values()) == 2
    assert uplink.outbox.balance() == (0, 0)
    event = cbor2.loads(await coap_request(config, aiocoap.GET, config.event_uri))
    assert (event["gen"], event["type"]) == (uplink.outbox.generation, "rule")
