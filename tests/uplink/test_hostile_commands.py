"""Hostile cloud commands against a running uplink and real peers (mosquitto,
libcoap's coap-server): no message ends the session, none reaches a device
with a value it cannot take, every answer is strict JSON, and a flood of junk
neither evicts stored readings nor delays the answers to valid commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiocoap
import aiomqtt
import cbor2
from pydantic import TypeAdapter

from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import Command, Device, Point, Reading, ValueType
from edged.outbox import READINGS, Outbox, OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService
from edged.uplink.uplinks import single
from tests.uplink.peers import Broker, CoapServer, coap_client, coap_config, coap_request, collecting, recording_relay

TOPIC = "edged/gw1/commands"


def service(tmp_path: Path, hub: Hub, port: int, outbox: dict[str, Any] | None = None, **uplink: Any) -> UplinkService:
    config = TypeAdapter(UplinkConfig).validate_python({"type": "mqtt", "host": "127.0.0.1", "port": port, **uplink})
    return single(
        OutboxConfig.model_validate(outbox or {}), config, hub, tmp_path / "state", "gw1",
        backoff=Backoff(initial=0.05, maximum=0.5),
    )


def dimmer(hub: Hub) -> list[Command]:
    """An online ``sim/dimmer`` with writable float, int and str points; returns the list its writes land in."""
    points = {
        "level": Point("level", ValueType.FLOAT, writable=True),
        "steps": Point("steps", ValueType.INT, writable=True),
        "label": Point("label", ValueType.STR, writable=True),
    }
    hub.add_device(Device("sim/dimmer", "sim", points=points, online=True))
    writes: list[Command] = []

    async def write(command: Command) -> None:
        writes.append(command)

    hub.attach_writer("sim", write)
    return writes


def strict(payload: bytes) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity are not numbers."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a result: {payload[:200]!r}")

    return json.loads(payload, parse_constant=refuse)


async def test_hostile_commands_never_end_the_session_nor_reach_a_device(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    writes = dimmer(hub)
    hostile = {
        "nan": b'{"id": "nan", "device": "sim/dimmer", "point": "level", "value": NaN}',
        "inf": b'{"id": "inf", "device": "sim/dimmer", "point": "level", "value": -Infinity}',
        "e999": b'{"id": "e999", "device": "sim/dimmer", "point": "level", "value": 1e999}',
        "huge": b'{"id": "huge", "device": "sim/dimmer", "point": "level", "value": 1%s}' % (b"0" * 400),
        "int65": b'{"id": "int65", "device": "sim/dimmer", "point": "steps", "value": 18446744073709551616}',
        "e300": b'{"id": "e300", "device": "sim/dimmer", "point": "steps", "value": 1e300}',
        "surrogate": b'{"id": "surrogate", "device": "sim/dimmer", "point": "label", "value": "\\udc00"}',
    }
    deep = b'{"id": "deep", "device": "sim/dimmer", "point": "level", "value": %s}' % (b"[" * 30_000 + b"]" * 30_000)
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:  # kept by the broker, shown at every subscribe
        await client.publish(TOPIC, b"[" * 60_000, qos=1, retain=True)
    async with collecting(broker.port, "edged/gw1/commands/result") as cloud:
        uplink = service(tmp_path, hub, broker.port)
        running(uplink)

        def too_deep() -> int:  # refused before it is decoded: its id is not known
            return sum("nested deeper than 32 levels" in str(m.get("reason")) for m in cloud.json)

        await cloud.until(lambda: too_deep() == 1)

        def result(id_: str) -> dict[str, Any] | None:
            return next((m for m in cloud.json if m.get("id") == id_), None)

        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for payload in [*hostile.values(), deep]:
                await client.publish(TOPIC, payload, qos=1)
            await client.publish(TOPIC, json.dumps({"id": "ok", "device": "sim/dimmer", "point": "level", "value": 0.5}), qos=1)
        await cloud.until(lambda: result("ok") and all(result(i) for i in hostile) and too_deep() == 2)

        assert result("ok")["status"] == "ok"  # type: ignore[index]
        reasons = {i: result(i)["reason"] for i in hostile}  # type: ignore[index]
        assert all(result(i)["status"] == "rejected" for i in hostile), reasons  # type: ignore[index]
        assert "NaN is not a JSON number" in reasons["nan"]
        assert "-Infinity is not a JSON number" in reasons["inf"]
        assert "'1e999' is out of range" in reasons["e999"]
        assert "out of range for a float" in reasons["huge"]
        assert "out of the 64-bit range" in reasons["int65"] and "1e+300, out of the 64-bit range" in reasons["e300"]
        assert "not valid Unicode" in reasons["surrogate"]
        assert [(c.key, c.value) for c in writes] == [("level", 0.5)], "nothing hostile reached the device"
        for _, payload in cloud.messages:
            strict(payload)
        assert uplink.reconnects == 0 and uplink.connected


async def test_a_flood_of_junk_evicts_no_stored_reading_and_valid_commands_are_answered(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    writes = recording_relay(hub)
    outbox_config = {"max_bytes": "200kB"}
    # Readings stored while the cloud was away: sent back at 1 reading/s, so they stay stored through the test.
    stored = Outbox(OutboxConfig.model_validate(outbox_config), tmp_path / "state")
    await stored.open()
    stored.put([Reading("sim/meter", "count", i, 1_700_000_000.0 + i) for i in range(1000)])
    await stored.close()
    junk = [
        json.dumps({"id": "j" * 300_000}).encode(),
        json.dumps({"id": "j", "device": "sim/relay", "point": "on", "value": True, "x" * 300_000: 1}).encode(),
        json.dumps({"id": "j", "device": "sim/" + "x" * 300_000, "point": "on", "value": True}).encode(),
        b"[" * 300_000,
    ] + [b"junk %d" % i for i in range(196)]
    uplink = service(tmp_path, hub, broker.port, outbox_config, backfill_rate=1)
    async with collecting(broker.port, "edged/gw1/commands/result") as cloud:
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)
        started = time.monotonic()
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for i, payload in enumerate(junk):
                await client.publish(TOPIC, payload, qos=1)
                if i % 20 == 0:
                    valid = {"id": f"ok{i}", "device": "sim/relay", "point": "on", "value": i % 40 == 0}
                    await client.publish(TOPIC, json.dumps(valid), qos=1)

        def answered() -> list[dict[str, Any]]:
            return [m for m in cloud.json if m.get("status") == "rejected"]

        await cloud.until(lambda: len(answered()) + uplink.stats().commands_dropped == len(junk))
        await cloud.until(lambda: sum(str(m.get("id")).startswith("ok") for m in cloud.json) == 10)
        elapsed = time.monotonic() - started
        await uplink.outbox.flush()

        assert [m["status"] for m in cloud.json if str(m.get("id")).startswith("ok")] == ["ok"] * 10
        assert [c.value for c in writes] == [i % 40 == 0 for i in range(0, 200, 20)]
        assert 50 <= len(answered()) <= 50 + 10 * elapsed + 1, "a burst of 50 answers, then 10/s"
        assert uplink.stats().commands_dropped > 0
        assert all(len(json.dumps(m)) < 512 for m in answered()), "an answer to junk is small"
        assert uplink.outbox.dropped_full == 0
        rows = await uplink.outbox.fetch(0, uplink.outbox.last_id, 100_000)
        assert sum(r.count for r in rows if r.kind == READINGS) == 1000, "every stored reading is still there"
        assert uplink.reconnects == 0


async def test_hostile_cbor_over_coap_never_ends_the_session_nor_reaches_a_device(
    tmp_path: Path, hub: Hub, coap_server: CoapServer, running: Any
) -> None:
    writes = dimmer(hub)
    base = f"coaps://127.0.0.1:{coap_server.port}/gw"
    command_uri, result_uri = f"{base}/commands", f"{base}/results"
    config = coap_config(coap_server.port, inflight=1, command_uri=command_uri, result_uri=result_uri)
    big = {"id": "big", "device": "sim/dimmer", "point": "level", "value": 2**70}  # a bignum: tag 2
    await coap_request(config, aiocoap.PUT, command_uri, cbor2.dumps(big), content_format=60)
    await coap_request(config, aiocoap.PUT, result_uri, b"")
    async with coap_client(config) as context:
        observed = context.request(aiocoap.Message(code=aiocoap.GET, uri=result_uri, observe=0))
        await observed.response
        results = aiter(observed.observation)

        async def next_result() -> dict[str, Any]:
            return cbor2.loads((await anext(results)).payload)

        uplink = single(OutboxConfig(), config, hub, tmp_path / "state", "gw1", backoff=Backoff(0.05, 0.5))
        running(uplink)
        result = await next_result()
        assert (result["id"], result["status"]) == ("big", "rejected")
        assert "CBOR tags are not accepted (tag 2)" in result["reason"]

        # An id that is a list holding itself (CBOR shared references), then one that is bytes.
        cycle = b"\xa4\x62id\xd8\x1c\x81\xd8\x1d\x00\x66device\x6asim/dimmer\x65point\x65level\x65value\x01"
        await coap_request(config, aiocoap.PUT, command_uri, cycle, content_format=60)
        result = await next_result()
        assert (result["id"], result["status"]) == (None, "rejected") and "tag 28" in result["reason"]
        await coap_request(config, aiocoap.PUT, command_uri, cbor2.dumps({**big, "id": b"\x00", "value": 1}), content_format=60)
        result = await next_result()
        assert (result["id"], result["status"]) == (None, "rejected") and "byte strings" in result["reason"]

        ok = {"id": "ok", "device": "sim/dimmer", "point": "level", "value": 0.5}
        await coap_request(config, aiocoap.PUT, command_uri, cbor2.dumps(ok), content_format=60)
        result = await next_result()
        assert (result["id"], result["status"]) == ("ok", "ok")
        observed.observation.cancel()
    assert [(c.id, c.value) for c in writes] == [("ok", 0.5)]
    assert uplink.reconnects == 0
