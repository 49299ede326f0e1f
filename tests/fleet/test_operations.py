"""Gateway operations on the command channel, and the state digest, on a real gateway process."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiomqtt

from tests.daemon_process import DaemonProcess
from tests.fleet.conftest import PREFIX, Cloud, config_text, gateway
from tests.uplink.peers import Broker

RULES = """rules:
  - id: echo
    triggers: [{type: change, point: sim/d0.relay}]
    actions: [{type: write, point: sim/nowhere.on, value: true}]
"""


async def test_every_operation_is_answered(tmp_path: Path, broker: Broker, cloud: Cloud, http_port: int) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_text(broker.port, http_port))
    async with gateway(path, http_port, cloud) as process:
        pong = await cloud.call("p", "ping")
        assert pong["status"] == "ok" and pong["result"]["pong"] is True and pong["device"] == "$gateway"
        status = (await cloud.call("s", "status"))["result"]
        assert status["gateway"] == "gw1" and status["adapters"]["sim"]["devices"] == 1 and status["config"]["id"] == "local"

        level = await cloud.call("l", "set_log_level", {"level": "debug", "seconds": 1})
        assert level["status"] == "ok" and level["result"]["level"] == "debug"
        await process.wait_line("log level back to info", timeout=10)  # the expiry puts the level back
        logs = (await cloud.call("g", "logs", {"lines": 5, "level": "warning"}))["result"]["lines"]
        assert logs and all(line["level"] in ("warning", "error") for line in logs)
        assert any("log level debug for 1 s" in line["msg"] for line in logs)
        device_logs = (await cloud.call("g2", "logs", {"device": "sim/d0"}))["result"]["lines"]
        assert device_logs and all(line.get("device") == "sim/d0" or "sim/d0" in line["msg"] for line in device_logs)

        path.write_text(config_text(broker.port, http_port, devices=2))
        assert (await cloud.call("r", "reload"))["status"] == "ok"
        _, devices = await process.get("/api/devices")
        assert len(devices) == 2  # type: ignore[arg-type]
        path.write_text(config_text(broker.port, http_port) + "nonsense: 1\n")
        failed = await cloud.call("r2", "reload")
        assert failed["status"] == "failed" and "config.yaml:" in failed["reason"] and "nonsense" in failed["reason"]

        path.write_text(config_text(broker.port, http_port) + RULES)
        assert (await cloud.call("r3", "reload"))["status"] == "ok"
        check = (await cloud.call("c", "rules_check"))["result"]
        assert check["rules"] == 1 and [p["rule"] for p in check["problems"]] == ["echo"]
        assert "sim/nowhere" in check["problems"][0]["message"]

        permit = await cloud.call("z", "zigbee_permit", {"seconds": 30})
        assert permit["status"] == "rejected" and "no Zigbee adapter" in permit["reason"]

        restart = await cloud.call("x", "restart")
        assert restart["status"] == "ok"
        assert await process.wait_exit() == 75


async def test_unknown_and_malformed_operations_are_rejected_with_a_reason(tmp_path: Path, broker: Broker, cloud: Cloud,
                                                                          http_port: int) -> None:  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(config_text(broker.port, http_port))
    async with gateway(path, http_port, cloud):
        unknown = await cloud.call("u", "format_disk")
        assert unknown["status"] == "rejected" and "unknown gateway operation 'format_disk'" in unknown["reason"]
        assert "ping" in unknown["reason"]
        bad = await cloud.call("b", "set_log_level", {"level": "loud"})
        assert bad["status"] == "rejected" and "level must be one of" in bad["reason"]
        extra = await cloud.call("e", "ping", {"now": True})
        assert extra["status"] == "rejected" and "unknown argument 'now'" in extra["reason"]
        not_object = await cloud.call("o", "logs", [1, 2])
        assert not_object["status"] == "rejected" and "value must be an object" in not_object["reason"]
        too_many = await cloud.call("t", "logs", {"lines": 10**6})
        assert too_many["status"] == "rejected" and "lines must be a number" in too_many["reason"]
        await cloud.client.publish(f"{PREFIX}/commands", json.dumps({"id": "n", "device": "$gateway", "point": 7}), qos=1)
        nameless = await cloud.until(lambda: cloud.answer("n"))
        assert nameless["status"] == "rejected" and "point must name the gateway operation" in nameless["reason"]
        await cloud.client.publish(f"{PREFIX}/config", b"\xff not json", qos=1)
        rejected = await cloud.until(lambda: next((r for r in cloud.on("events/config") if r["step"] == "rejected"), None))
        assert rejected["id"] is None and "bad JSON" in rejected["reasons"][0]


async def test_operations_are_refused_when_remote_configuration_is_off(tmp_path: Path, broker: Broker, cloud: Cloud,
                                                                       http_port: int) -> None:  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(config_text(broker.port, http_port).replace("enabled: true", "enabled: false"))
    process = DaemonProcess(path, http_port)
    await process.start()
    try:
        await process.wait_notification("READY=1", timeout=20)
        for attempt in range(40):  # sent again until the gateway has subscribed
            await cloud.client.publish(f"{PREFIX}/commands", json.dumps({"id": f"p{attempt}", "device": "$gateway",
                                                                        "point": "ping"}))  # fmt: skip
            try:
                answer = await cloud.until(lambda: cloud.answer(f"p{attempt}"), timeout=0.5)  # noqa: B023
                break
            except TimeoutError:
                continue
        assert answer["status"] == "rejected" and "remote_config.enabled is false" in answer["reason"]
        assert cloud.on("state") == []
    finally:
        await process.close()


async def test_the_state_digest_is_small_retained_and_complete(tmp_path: Path, broker: Broker, cloud: Cloud, http_port: int) -> None:
    path = tmp_path / "config.yaml"
    example = (Path(__file__).parents[2] / "config.example.yaml").read_text()
    path.write_text(example.replace("port: 8080", f"port: {http_port}").replace("id: edged-example ", "id: gw1 ") + f"""
uplink:
  type: mqtt
  host: 127.0.0.1
  port: {broker.port}
remote_config:
  enabled: true
  allow_unsigned: true
  state_interval: 1s
""")
    async with gateway(path, http_port, cloud):
        count = len(await cloud.until(lambda: cloud.on("state")))
        await cloud.until(lambda: len(cloud.on("state")) >= count + 2, timeout=10)  # one every state_interval
        state = cloud.on("state")[-1]
        size = len(json.dumps(state, separators=(",", ":")))
        print(f"state digest of config.example.yaml: {size} bytes")
        assert size < 2048
        assert set(state) >= {"v", "gateway", "ts", "config", "uptime", "health", "reasons", "adapters", "uplinks", "outbox"}
        assert state["gateway"] == "gw1" and state["config"]["id"] == "local" and len(state["config"]["hash"]) == 16
        assert state["uplinks"]["uplink"][0] == 1
        assert state["adapters"]["sim"] == ["running", 3, 3]
    assert (await retained_state(broker))["gateway"] == "gw1"  # a dashboard that connects later reads the last one


async def retained_state(broker: Broker) -> dict[str, Any]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="dashboard") as client, asyncio.timeout(10):
        await client.subscribe(f"{PREFIX}/state", qos=1)
        async for message in client.messages:
            assert message.retain
            return json.loads(message.payload)  # type: ignore[arg-type,no-any-return]
    raise AssertionError("no state digest")


async def test_remote_config_turned_on_by_a_reload_publishes_the_state_digest(tmp_path: Path, broker: Broker, cloud: Cloud,
                                                                              http_port: int) -> None:  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(config_text(broker.port, http_port).replace("  enabled: true", "  enabled: false"))
    async with gateway(path, http_port) as process:
        path.write_text(config_text(broker.port, http_port))
        process.signal(signal.SIGHUP)
        await process.wait_line("configuration reloaded")
        state = await cloud.until(lambda: cloud.on("state"), timeout=10)
        assert state[-1]["config"]["id"] == "local"
