"""The ThingsBoard profile against a real mosquitto, read and driven by a stand-in
that speaks ThingsBoard's gateway MQTT API: the devices it sees, the telemetry it
stores, the RPCs and shared attribute updates it sends and the answers it gets."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from edged.adapters.simulated.adapter import SimulatedAdapter
from edged.adapters.simulated.config import SimulatedConfig
from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import CommandResult, Device, Point, Quality, Reading, RuleEvent, ValueType
from edged.outbox import OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService
from edged.uplink.uplinks import single
from tests.uplink.peers import Broker
from tests.uplink.thingsboard_peer import TokenGate, thingsboard

TOKEN = "A1_TEST_TOKEN"


def service(tmp_path: Path, hub: Hub, port: int, outbox: dict[str, Any] | None = None, **uplink: Any) -> UplinkService:
    config = TypeAdapter(UplinkConfig).validate_python(
        {"type": "mqtt", "profile": "thingsboard", "host": "127.0.0.1", "port": port, "username": TOKEN, **uplink}
    )
    return single(OutboxConfig.model_validate(outbox or {}), config, hub, tmp_path / "state", "gw1",
                         backoff=Backoff(initial=0.05, maximum=0.5))  # fmt: skip


def boiler() -> Device:
    return Device("plant/boiler", "plant", "Boiler", "Acme", "B1", points={
        "temperature": Point("temperature", ValueType.FLOAT, "Cel"),
        "setpoint": Point("setpoint", ValueType.FLOAT, "Cel", writable=True, name="Set point"),
    }, online=True)  # fmt: skip


def simulated(hub: Hub, tmp_path: Path) -> SimulatedAdapter:
    config = SimulatedConfig.model_validate({"type": "simulated", "name": "sim", "interval": 3600, "seed": 1, "devices": [
        {"id": "thermostat", "kind": "thermostat"}, {"id": "relay", "kind": "relay"}]})  # fmt: skip
    return SimulatedAdapter(config, hub, tmp_path)


def taken(hub: Hub) -> list[tuple[str, str, Any, int]]:
    """Every reading the Hub gets from now on, as ThingsBoard should store it."""
    readings: list[tuple[str, str, Any, int]] = []
    hub.subscribe(lambda batch: readings.extend(
        (r.device_id, r.key, r.value, round(r.ts * 1000)) for r in batch if r.quality is not Quality.BAD))  # fmt: skip
    return readings


async def test_every_device_is_connected_with_its_metadata_and_every_reading_is_telemetry_once(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    hub.add_device(boiler())
    hub.add_device(Device("plant/pump", "plant", points={"on": Point("on", ValueType.BOOL, writable=True)}, online=False))
    readings = taken(hub)
    async with thingsboard(broker.port) as tb:
        uplink = service(tmp_path, hub, broker.port)
        running(uplink)
        await tb.until(lambda: tb.attributes("plant/boiler") and tb.attributes("plant/pump"))
        assert tb.connected() == {"plant/boiler": "plant", "plant/pump": "plant"}
        attributes = tb.attributes("plant/boiler")
        assert {k: attributes[k] for k in ("adapter", "name", "manufacturer", "model", "online")} == {
            "adapter": "plant", "name": "Boiler", "manufacturer": "Acme", "model": "B1", "online": True}  # fmt: skip
        assert attributes["points"]["temperature"] == {"type": "float", "unit": "Cel", "writable": False}
        assert attributes["points"]["setpoint"] == {"type": "float", "unit": "Cel", "writable": True, "name": "Set point"}
        assert tb.attributes("plant/pump")["online"] is False

        base = 1_767_225_600.0
        for i in range(200):
            ts = base + i * 0.0015  # some readings share a millisecond, some do not
            hub.publish([Reading("plant/boiler", "temperature", 20 + i / 10, ts), Reading("plant/boiler", "setpoint", 21.5, ts),
                         Reading("plant/pump", "on", i % 2 == 0, ts)])  # fmt: skip
        hub.publish([Reading("plant/boiler", "temperature", 30.0, base + 1), Reading("plant/boiler", "temperature", 31.0, base + 1)])
        hub.publish([Reading("plant/boiler", "temperature", None, base + 2, Quality.BAD)])
        await uplink.wait_for(lambda: uplink.outbox.accepted == 603 and uplink.outbox.depth == 0, 20)
        await tb.until(lambda: len(tb.telemetry()) >= 602)
        assert Counter(tb.telemetry()) == Counter(readings), "every reading exactly once, with its value and ms timestamp"
        assert len(readings) == 602
        for message in tb.on("v1/gateway/telemetry"):
            for entries in message.values():
                for entry in entries:
                    assert isinstance(entry["ts"], int)
                    assert entry["values"], "no empty entries"

        hub.add_device(Device("plant/valve", "plant", points={"open": Point("open", ValueType.BOOL)}, online=True))
        hub.set_online("plant/pump", True)
        hub.remove_device("plant/boiler")
        await tb.until(lambda: tb.on("v1/gateway/disconnect"))
        assert tb.connected()["plant/valve"] == "plant"
        assert tb.attributes("plant/pump")["online"] is True
        assert tb.on("v1/gateway/disconnect") == [{"device": "plant/boiler"}]

        hub.emit(RuleEvent("r1", "high_load", {"load": 93.5}, base + 3))
        await tb.until(lambda: tb.on("v1/devices/me/telemetry"))
        assert tb.on("v1/devices/me/telemetry") == [
            {"ts": 1_767_225_603_000, "values": {"high_load": {"rule": "r1", "data": {"load": 93.5}}}}]  # fmt: skip


async def test_a_device_profile_can_be_named_and_large_rows_are_split(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    points = {f"point_{i}": Point(f"point_{i}", ValueType.FLOAT, "Cel") for i in range(20)}
    hub.add_device(Device("sim/big", "sim", points=points, online=True))  # its attributes exceed the limit
    readings = taken(hub)
    async with thingsboard(broker.port) as tb:
        uplink = service(tmp_path, hub, broker.port, thingsboard={"device_type": "edged device"}, max_message_bytes=400)
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)
        hub.publish([Reading("sim/meter", f"p{i}", i, 1_767_225_600.0 + i) for i in range(100)])
        await uplink.wait_for(lambda: uplink.outbox.accepted == 100 and uplink.outbox.depth == 0, 20)
        await tb.until(lambda: len(tb.telemetry()) >= 100)
        assert tb.connected() == {"sim/big": "edged device", "sim/meter": "edged device"}, "announced before its readings"
        assert tb.attributes("sim/big") == {}, "refused by the packet limit, and the link went on"
        assert Counter(tb.telemetry()) == Counter(readings)
        assert len(tb.on("v1/gateway/telemetry")) > 1


async def test_rpcs_write_and_read_points_and_everything_else_is_refused_while_the_link_goes_on(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    running(simulated(hub, tmp_path / "sim"))
    async with thingsboard(broker.port) as tb:
        uplink = service(tmp_path, hub, broker.port)
        running(uplink)
        await tb.until(lambda: {"sim/thermostat", "sim/relay"} <= set(tb.connected()))
        assert hub.value("sim/relay", "relay").value is False  # type: ignore[union-attr]

        await tb.rpc("sim/relay", 1, "set", "relay true")
        await tb.until(lambda: tb.reply("sim/relay", 1))
        assert tb.reply("sim/relay", 1) == {"success": True, "status": "ok"}
        assert hub.value("sim/relay", "relay").value is True  # type: ignore[union-attr]

        await tb.rpc("sim/thermostat", 2, "setpoint", 22.5)  # a method named after the point, the value as params
        await tb.rpc("sim/thermostat", 3, "set", "setpoint; 23.5;")
        await tb.until(lambda: tb.reply("sim/thermostat", 2) and tb.reply("sim/thermostat", 3))
        assert hub.value("sim/thermostat", "setpoint").value == 23.5  # type: ignore[union-attr]

        await tb.rpc("sim/thermostat", 4, "get", "setpoint")
        await tb.rpc("sim/thermostat", 5, "temperature")
        await tb.until(lambda: tb.reply("sim/thermostat", 4) and tb.reply("sim/thermostat", 5))
        assert tb.reply("sim/thermostat", 4) == {"result": 23.5}
        assert tb.reply("sim/thermostat", 5) == {"result": hub.value("sim/thermostat", "temperature").value}  # type: ignore[union-attr]

        refused = {
            6: ("sim/thermostat", "set", "temperature 30", "read-only"),
            7: ("sim/nothing", "set", "relay true", "unknown device"),
            8: ("sim/relay", "reboot", None, "unknown method"),
            9: ("sim/relay", "set", "relay", "set takes params"),
            10: ("sim/relay", "set", [[[[[[[[[["x"]]]]]]]]]], "set takes params"),
            11: ("sim/relay", "relay", {"deep": [[[[["x"]]]]]}, "params must be the value"),
            12: ("sim/thermostat", "setpoint", 80, "between 5 and 30"),  # the device itself refuses
        }
        for request_id, (device, method, params, _) in refused.items():
            await tb.rpc(device, request_id, method, params)
        unanswerable = [b"{not json", b"x" * 70_000, b"[" * 30_000 + b"]" * 30_000, b'"just text"',
                        json.dumps({"device": "sim/relay", "data": {"method": "set", "params": "relay true"}}).encode(),
                        json.dumps({"device": "sim/relay", "data": "set relay true"}).encode(),
                        json.dumps({"data": {"id": 20, "method": "set", "params": "relay true"}}).encode()]  # fmt: skip
        for payload in unanswerable:
            await tb.publish("v1/gateway/rpc", payload)
        await tb.rpc("sim/relay", 13, "relay", False)  # after all of them, the link still writes
        await tb.until(lambda: all(tb.reply(d, i) for i, (d, *_) in refused.items()) and tb.reply("sim/relay", 13))
        for request_id, (device, _, _, reason) in refused.items():
            answer = tb.reply(device, request_id)
            assert answer is not None and answer["success"] is False, (request_id, answer)
            assert reason in answer["error"], (request_id, answer)  # type: ignore[index]
        assert tb.reply("sim/relay", 13) == {"success": True, "status": "ok"}
        assert hub.value("sim/relay", "relay").value is False  # type: ignore[union-attr]
        assert hub.value("sim/thermostat", "temperature").value != 30  # type: ignore[union-attr]
        assert hub.value("sim/thermostat", "setpoint").value == 23.5  # type: ignore[union-attr]
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)
        assert len(tb.replies()) == 13, "no answer without a device and an id"
        rejected = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "rejected" in r.getMessage()]
        for reason in ("bad JSON", "at most 65536", "nested too deep", "expected an object", "data.id must be",
                       "expected data", "device must be"):  # fmt: skip
            assert any(reason in message for message in rejected), reason
        assert uplink.connected and uplink.reconnects == 0


async def test_a_shared_attribute_writes_a_writable_point_and_other_keys_are_ignored(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    running(simulated(hub, tmp_path / "sim"))
    results: list[CommandResult] = []
    hub.subscribe_events(lambda event: results.append(event) if isinstance(event, CommandResult) else None)
    async with thingsboard(broker.port) as tb:
        uplink = service(tmp_path, hub, broker.port)
        running(uplink)
        await tb.until(lambda: "sim/thermostat" in tb.connected())
        await tb.share("sim/thermostat", {"setpoint": 25, "temperature": 99, "colour": "red", "heating": None})
        await tb.share("sim/relay", {"relay": "on"})
        await uplink.wait_for(lambda: len(results) == 2, 10)
        assert {(r.command.device_id, r.command.key, r.command.value, r.status) for r in results} == {
            ("sim/thermostat", "setpoint", 25.0, "ok"), ("sim/relay", "relay", True, "ok")}  # fmt: skip
        assert hub.value("sim/thermostat", "setpoint").value == 25.0  # type: ignore[union-attr]
        assert hub.value("sim/relay", "relay").value is True  # type: ignore[union-attr]
        assert hub.value("sim/thermostat", "temperature").value != 99  # type: ignore[union-attr]
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)
        assert tb.replies() == {}, "an attribute update has no answer"


async def test_a_broker_restart_in_the_middle_loses_no_reading(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    readings = taken(hub)
    async with thingsboard(broker.port) as tb:
        uplink = service(tmp_path, hub, broker.port, outbox={"row_readings": 50})
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)

        def batch(start: int) -> list[Reading]:
            return [Reading(f"sim/{d}", "count", i, 1_767_225_600.0 + i) for d in ("a", "b") for i in range(start, start + 100)]

        for start in range(0, 1000, 100):
            hub.publish(batch(start))
        broker.stop()
        await uplink.wait_for(lambda: not uplink.connected, 10)
        for start in range(1000, 3000, 100):
            hub.publish(batch(start))
        await uplink.wait_for(lambda: uplink.outbox.accepted == 6000, 10)
        broker.start()
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 30)
        await tb.until(lambda: len(set(tb.telemetry())) == 6000, 30)
        assert set(tb.telemetry()) == set(readings)
        assert uplink.reconnects >= 1
        assert {"sim/a", "sim/b"} <= set(tb.connected())


async def test_the_access_token_is_the_user_name_and_a_wrong_one_is_refused(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    async with TokenGate(TOKEN, broker.port) as gate, thingsboard(broker.port) as tb:
        good = service(tmp_path / "good", hub, gate.port)
        bad = service(tmp_path / "bad", hub, gate.port, username="WRONG_TOKEN", client_id="bad")
        running(good)
        running(bad)
        await good.wait_for(lambda: good.connected, 10)
        await bad.wait_for(lambda: bad.reconnects >= 2, 10)
        assert not bad.connected
        assert gate.refused >= 2
        hub.publish([Reading("sim/a", "count", 1, 1_767_225_600.0)])
        await good.wait_for(lambda: good.stats().acked == 1, 10)
        await tb.until(tb.telemetry)
        assert tb.telemetry() == [("sim/a", "count", 1, 1_767_225_600_000)]
        await bad.wait_for(lambda: bad.outbox.depth == 1, 10)  # what cannot be sent stays in the outbox


async def test_an_x509_gateway_connects_with_its_client_certificate(
    tmp_path: Path, hub: Hub, tls_broker: Broker, certs: dict[str, Path], running: Any
) -> None:
    tls = {"ca": certs["ca"], "cert": certs["client_cert"], "key": certs["client_key"]}
    uplink = service(tmp_path, hub, tls_broker.port, username=None, tls=tls)
    running(uplink)
    await uplink.wait_for(lambda: uplink.connected, 10)
    hub.publish([Reading("sim/a", "count", i, 1_767_225_600.0 + i) for i in range(10)])
    await uplink.wait_for(lambda: uplink.stats().acked == 10, 10)
