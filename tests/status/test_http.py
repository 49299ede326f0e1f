"""The HTTP API as an operator and a script use it: the write API and its
token, permit-join, and the refusal to expose an open API to the network."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edged.config import load_config
from edged.daemon import Daemon
from edged.errors import ConfigError
from tests.conftest import Watch
from tests.status.conftest import StartDaemon, http_url

TOKEN_STATUS = "  http: {host: 127.0.0.1, port: 0, token: s3cret-token}"
SETPOINT = "/api/devices/sim/thermostat/points/setpoint"


async def test_write_api_refuses_without_the_token_and_works_with_it(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(TOKEN_STATUS)
    url = http_url(daemon)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + SETPOINT, json={"value": 23.5}) as response:
            assert response.status == 401
            assert "bearer token" in (await response.json())["error"]
        bad = {"Authorization": "Bearer wrong"}
        async with session.post(url + SETPOINT, json={"value": 23.5}, headers=bad) as response:
            assert response.status == 401
        assert daemon.hub.value("sim/thermostat", "setpoint").value == 21.0

        good = {"Authorization": "Bearer s3cret-token"}
        async with session.post(url + SETPOINT, json={"value": 23.5}, headers=good) as response:
            assert response.status == 200
            result = await response.json()
        assert result["status"] == "ok" and result["reason"] is None
        assert daemon.hub.value("sim/thermostat", "setpoint").value == 23.5

        # Reading needs the token too; only /health is open.
        async with session.get(url + "/api/devices") as response:
            assert response.status == 401
        async with session.get(url + "/api/devices", headers=good) as response:
            assert response.status == 200
        async with session.get(url + "/metrics") as response:
            assert response.status == 401
        async with session.get(url + "/health") as response:
            assert response.status == 200


async def test_write_api_reports_why_a_command_was_refused(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    url = http_url(daemon)
    async with aiohttp.ClientSession() as session:
        async def post(path: str, body: object) -> tuple[int, dict]:
            async with session.post(url + path, json=body) as response:
                return response.status, await response.json()

        status, body = await post("/api/devices/sim/thermostat/points/temperature", {"value": 30})
        assert (status, body["status"]) == (422, "rejected") and "read-only" in body["reason"]
        status, body = await post(SETPOINT, {"value": "warm"})
        assert (status, body["status"]) == (422, "rejected") and "expected float" in body["reason"]
        status, body = await post(SETPOINT, {"value": 99})  # the device itself refuses
        assert (status, body["status"]) == (502, "failed") and "between 5 and 30" in body["reason"]
        status, body = await post("/api/devices/sim/nothing/points/x", {"value": 1})
        assert status == 404 and "unknown device" in body["error"]
        status, body = await post("/api/devices/sim/relay/points/nope", {"value": 1})
        assert status == 404 and "no point" in body["error"]
        status, body = await post(SETPOINT, {"setpoint": 20})
        assert status == 400 and "value" in body["error"]
        async with session.post(url + SETPOINT, data=b"{not json", headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400
        status, body = await post("/api/devices/sim/relay/points/relay", {"value": True})
        assert status == 200 and body["status"] == "ok"
    assert daemon.hub.value("sim/relay", "relay").value is True


def test_network_listener_without_token_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("status:\n  http:\n    host: 0.0.0.0\n    port: 8080\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "config.yaml:2: status.http: host" in message and "token is required" in message
    # With a token it is accepted.
    path.write_text("status:\n  http:\n    host: 0.0.0.0\n    token: abc\n")
    assert load_config(path).status.http.token is not None


def test_edged_run_refuses_to_start_an_open_network_listener(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("status:\n  http: {host: '::', port: 0}\n")
    result = subprocess.run(
        [sys.executable, "-m", "edged", "run", "-c", str(path)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "token is required" in result.stderr


async def test_status_server_refuses_an_open_network_listener_even_if_config_was_bypassed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("gateway: {state_dir: state}\n")
    config = load_config(path)
    http = config.status.http.model_copy(update={"host": "0.0.0.0"})
    config = config.model_copy(update={"status": config.status.model_copy(update={"http": http})})
    from edged.status.http import StatusServer

    with pytest.raises(ValueError, match="without a token"):
        StatusServer(Daemon(config, path).view, config.status.http)


ZIGBEE = """\
  - type: zigbee
    name: zigbee
    radio: simulated
    permit_join: {on_start: 60}
    simulated:
      devices:
        - {kind: plug, ieee: "00:12:4b:00:00:00:00:03"}
"""


async def test_permit_join_opens_the_zigbee_network_under_both_paths(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(extra=ZIGBEE)
    url = http_url(daemon)
    radio = await _radio(daemon)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/zigbee/permit", json={"seconds": 500}) as response:
            assert response.status == 400
        async with session.post(url + "/api/zigbee/permit", json={"seconds": 0}) as response:
            assert response.status == 200 and await response.json() == {"adapters": ["zigbee"], "seconds": 0}
        assert radio.permit_until <= _now()
        async with session.post(url + "/api/adapters/zigbee/permit", json={"seconds": 90}) as response:
            assert response.status == 200 and await response.json() == {"adapter": "zigbee", "seconds": 90}
        assert radio.permit_until > _now() + 80


async def test_adapter_operations_are_found_by_instance_and_name(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    url = http_url(daemon)
    watch = Watch(daemon.hub)
    await watch.until(lambda: daemon.hub.devices["sim/relay"].online)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/zigbee/permit", json={"seconds": 60}) as response:
            assert response.status == 409  # nothing here can let devices join
            assert "zigbee" in (await response.json())["error"]
        for path, status in (("/api/adapters/nothing/outage", 404), ("/api/adapters/sim/reboot", 404)):
            async with session.post(url + path, json={"device": "sim/relay"}) as response:
                assert response.status == status, path
        async with session.get(url + "/api/adapters/sim/outage") as response:
            assert response.status == 405
        async with session.post(url + "/api/adapters/sim/outage", json={"device": "sim/none"}) as response:
            assert response.status == 404
        async with session.post(url + "/api/adapters/sim/outage", json={"device": "sim/relay", "seconds": 1e9}) as response:
            assert response.status == 400
        async with session.post(url + "/api/adapters/sim/outage", json={"device": "sim/relay", "seconds": 60}) as response:
            assert response.status == 200 and await response.json() == {"device": "sim/relay", "seconds": 60}
        assert daemon.hub.devices["sim/relay"].online is False
        async with session.post(url + "/api/devices/sim/relay/points/relay", json={"value": True}) as response:
            assert response.status == 409, "an absent device takes no write"


async def _radio(daemon: Daemon) -> Any:
    adapter: Any = daemon.adapters["zigbee"]
    await Watch(daemon.hub).until(lambda: adapter.app is not None and adapter.state == "running")
    return adapter.app


def _now() -> float:
    return asyncio.get_running_loop().time()


async def test_remove_forgets_a_zigbee_device_and_refuses_others(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(extra=ZIGBEE)
    plug = "zigbee/00:12:4b:00:00:00:00:03"
    watch = Watch(daemon.hub)
    await watch.until(lambda: plug in daemon.hub.devices and daemon.hub.devices[plug].online)
    url = http_url(daemon)
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/api/zigbee/remove", json={"device": "sim/relay"}) as response:
            assert response.status == 409 and "not a Zigbee device" in (await response.json())["error"]
        async with session.post(url + "/api/zigbee/remove", json={"device": "zigbee/nothing"}) as response:
            assert response.status == 404
        async with session.post(url + "/api/zigbee/remove", json={"device": plug}) as response:
            assert response.status == 200 and await response.json() == {"removed": plug}
    assert plug not in daemon.hub.devices


async def test_status_names_the_running_configuration(start_daemon: StartDaemon) -> None:
    """The id (``local`` until the cloud pushes one) and SHA-256 of the file the gateway runs."""
    import hashlib

    daemon = await start_daemon()
    async with aiohttp.ClientSession() as session, session.get(http_url(daemon) + "/api/status") as response:
        status = await response.json()
    assert status["config"] == {"id": "local", "hash": hashlib.sha256(daemon.config_path.read_bytes()).hexdigest()}
