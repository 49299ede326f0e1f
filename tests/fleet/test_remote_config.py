"""Configurations pushed from the cloud to a real gateway process over a real mosquitto."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.daemon_process import free_port
from tests.fleet.conftest import Cloud, Signer, config_text, gateway
from tests.uplink.peers import Broker


async def test_a_signed_push_is_applied_confirmed_and_its_devices_appear(tmp_path: Path, broker: Broker, cloud: Cloud,
                                                                      signer: Signer, http_port: int) -> None:  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(config_text(broker.port, http_port, public_key=signer.public))
    async with gateway(path, http_port, cloud) as process:
        new = config_text(broker.port, http_port, public_key=signer.public, devices=3)
        pushed = time.monotonic()
        await cloud.push("cfg-1", new, signer.sign(new))
        confirmed = await cloud.step("cfg-1", "confirmed")
        print(f"push to confirmed: {time.monotonic() - pushed:.2f} s (gateway: {confirmed['seconds']} s)")
        assert [report["step"] for report in cloud.steps("cfg-1")] == ["received", "applied", "confirmed"]
        assert path.read_text() == new
        _, devices = await process.get("/api/devices")
        assert {device["id"] for device in devices} == {"sim/d0", "sim/d1", "sim/d2"}  # type: ignore[union-attr]
        state = await cloud.until(lambda: next((s for s in cloud.on("state") if s["config"]["id"] == "cfg-1"), None))
        assert state["adapters"]["sim"] == ["running", 3, 3] or state["adapters"]["sim"][0] == "running"
    versions = list((tmp_path / "state" / "fleet" / "versions").glob("*.yaml"))
    assert len(versions) == 1 and versions[0].read_text() == config_text(broker.port, http_port, public_key=signer.public)


async def test_a_yaml_error_is_rejected_with_file_and_line(tmp_path: Path, broker: Broker, cloud: Cloud, http_port: int) -> None:
    path = tmp_path / "config.yaml"
    original = config_text(broker.port, http_port)
    path.write_text(original)
    async with gateway(path, http_port, cloud):
        await cloud.push("bad-yaml", original + "adapters: [\n  - {type: simulated\n")
        rejected = await cloud.step("bad-yaml", "rejected")
        assert rejected["reasons"] and all(reason.startswith("config.yaml:") for reason in rejected["reasons"])
        assert any(reason.split(":")[1].isdigit() for reason in rejected["reasons"])
        await cloud.push("bad-key", original.replace("interval: 200ms", "interval: soon"))
        rejected = await cloud.step("bad-key", "rejected")
        assert any("config.yaml:9: adapters[0].interval" in reason for reason in rejected["reasons"]), rejected["reasons"]
        rule = ("rules:\n  - id: r\n    triggers: [{type: change, point: sim/d0.relay}]\n"
                "    actions: [{type: write, point: sim/d0.rely, value: true}]\n")  # a point the device does not have
        await cloud.push("bad-point", original + rule)
        rejected = await cloud.step("bad-point", "rejected")
        assert any("rules[0] (id r).actions[0].point: device sim/d0 has no point 'rely'" in reason for reason in rejected["reasons"])
    assert path.read_text() == original


async def test_a_tampered_or_unsigned_push_is_rejected(tmp_path: Path, broker: Broker, cloud: Cloud, signer: Signer,
                                                      http_port: int) -> None:  # fmt: skip
    path = tmp_path / "config.yaml"
    original = config_text(broker.port, http_port, public_key=signer.public)
    path.write_text(original)
    async with gateway(path, http_port, cloud):
        new = config_text(broker.port, http_port, public_key=signer.public, devices=2)
        await cloud.push("tampered", new.replace("d1", "d9"), signer.sign(new))
        assert "signature does not match" in (await cloud.step("tampered", "rejected"))["reasons"][0]
        await cloud.push("unsigned", new)
        assert "unsigned" in (await cloud.step("unsigned", "rejected"))["reasons"][0]
        other = Signer()
        await cloud.push("stranger", new, other.sign(new))
        assert "signature does not match" in (await cloud.step("stranger", "rejected"))["reasons"][0]
        await cloud.push("off", new.replace("enabled: true", "enabled: false"), signer.sign(new.replace("enabled: true", "enabled: false")))
        assert "remote_config.enabled" in (await cloud.step("off", "rejected"))["reasons"][0]
    assert path.read_text() == original


async def test_a_push_to_a_dead_broker_is_rolled_back_and_the_gateway_comes_back(
    tmp_path: Path, broker: Broker, cloud: Cloud, http_port: int
) -> None:
    path = tmp_path / "config.yaml"
    original = config_text(broker.port, http_port, confirm_after="3s")
    path.write_text(original)
    async with gateway(path, http_port, cloud) as process:
        dead = config_text(free_port(), http_port, confirm_after="3s")
        pushed = time.monotonic()
        await cloud.push("dead", dead)
        rolled_back = await cloud.step("dead", "rolled_back", timeout=30)
        print(f"push to rolled back (report received): {time.monotonic() - pushed:.2f} s (gateway: {rolled_back['seconds']} s)")
        assert 3.0 <= rolled_back["seconds"] < 6.0
        assert rolled_back["reasons"] == ["uplink uplink is not connected"]
        assert path.read_text() == original
        # "applied" was stored while the pushed uplink was down, so it may come from the backlog after
        # the live "rolled_back"; the reports' sequence numbers keep the order they were made in.
        await cloud.step("dead", "applied", timeout=10)
        made = sorted(cloud.steps("dead"), key=lambda report: (report["gen"], report["seq"]))
        assert [report["step"] for report in made] == ["received", "applied", "rolled_back"]
        answer = await cloud.call("after", "ping")
        assert answer["status"] == "ok"
        _, status = await process.get("/api/status")
        assert status["uplink"]["connected"] is True  # type: ignore[index]


async def test_a_gateway_killed_during_a_trial_rolls_back_at_start(tmp_path: Path, broker: Broker, cloud: Cloud,
                                                                   http_port: int) -> None:  # fmt: skip
    path = tmp_path / "config.yaml"
    original = config_text(broker.port, http_port, confirm_after="60s")
    path.write_text(original)
    dead = config_text(free_port(), http_port, confirm_after="60s", devices=2)
    async with gateway(path, http_port, cloud) as process:
        await cloud.push("killed", dead)
        await process.wait_line("configuration killed applied; on trial", timeout=20)
        assert path.read_text() == dead
        process.signal(signal.SIGKILL)
        await process.wait_exit()
    async with gateway(path, http_port, cloud) as process:
        assert path.read_text() == original
        rolled_back = await cloud.step("killed", "rolled_back")
        assert rolled_back["reasons"] == ["the gateway stopped during the trial"]
        _, devices = await process.get("/api/devices")
        assert [device["id"] for device in devices] == ["sim/d0"]  # type: ignore[union-attr]
        state = await cloud.until(lambda: cloud.on("state") and cloud.on("state")[-1]["config"]["id"] == "local")
        assert state
    assert not (tmp_path / "state" / "fleet" / "trial.json").exists()
