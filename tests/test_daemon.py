"""The daemon as systemd and an operator see it: a real ``edged run`` process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.daemon_process import daemon, free_port

CONFIG = """\
gateway:
  id: test-gw
  state_dir: state
status:
  http: {{host: 127.0.0.1, port: {port}}}
adapters:
  - type: simulated
    name: sim
    interval: 50ms
    devices:
      - {{id: thermostat, kind: thermostat}}
      - {{id: meter, kind: energy_meter}}
{extra}"""


def write_config(path: Path, port: int, extra: str = "") -> Path:
    path.write_text(CONFIG.format(port=port, extra=extra))
    return path


@pytest.fixture
def port() -> int:
    return free_port()


async def devices(proc) -> dict[str, dict]:
    status, body = await proc.get("/api/devices")
    assert status == 200
    return {d["id"]: d for d in body}


async def test_ready_then_healthy_with_moving_simulated_values(tmp_path, port):
    async with daemon(write_config(tmp_path / "c.yaml", port), port) as proc:
        await proc.wait_notification("READY=1")
        assert await proc.get("/health") == (200, {"status": "ok"})
        status, body = await proc.get("/api/status")
        assert body["gateway"] == "test-gw"
        assert body["adapters"]["sim"]["state"] == "running"
        first = (await devices(proc))["sim/meter"]
        assert first["online"] is True
        assert first["points"]["power"]["unit"] == "W"
        assert first["points"]["power"]["quality"] == "good"
        for _ in range(200):  # the API has no push; poll it, bounded
            later = (await devices(proc))["sim/meter"]
            if later["points"]["power"]["value"] != first["points"]["power"]["value"]:
                break
            await asyncio.sleep(0.05)
        assert later["points"]["power"]["value"] != first["points"]["power"]["value"]
        assert later["points"]["power"]["ts"] > first["points"]["power"]["ts"]
        status, body = await proc.get("/api/devices/sim/thermostat")
        assert status == 200 and body["points"]["setpoint"]["writable"] is True
        status, body = await proc.get("/api/devices/sim/nothing")
        assert status == 404 and "unknown device" in body["error"]


async def test_sigterm_stops_cleanly_with_exit_0(tmp_path, port):
    async with daemon(write_config(tmp_path / "c.yaml", port), port) as proc:
        await proc.wait_notification("READY=1")
        proc.signal(signal.SIGTERM)
        await proc.wait_notification("STOPPING=1")
        assert await proc.wait_exit(timeout=10) == 0


async def test_sighup_with_broken_file_keeps_running_configuration(tmp_path, port):
    path = write_config(tmp_path / "c.yaml", port)
    async with daemon(path, port) as proc:
        await proc.wait_notification("READY=1")
        path.write_text(path.read_text().replace("kind: thermostat", "kind: toaster"))
        proc.signal(signal.SIGHUP)
        line = await proc.wait_line("reload rejected")
        assert "reload rejected" in line
        line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "toaster" in text)
        await proc.wait_line(f"{path}:{line}: adapters[0].devices[0].kind: expected 'thermostat'")
        assert await proc.get("/health") == (200, {"status": "ok"})
        assert set(await devices(proc)) == {"sim/thermostat", "sim/meter"}


async def test_sighup_applies_a_valid_change(tmp_path, port):
    path = write_config(tmp_path / "c.yaml", port)
    async with daemon(path, port) as proc:
        await proc.wait_notification("READY=1")
        path.write_text(path.read_text().replace("      - {id: meter, kind: energy_meter}", "      - {id: relay, kind: relay}"))
        proc.signal(signal.SIGHUP)
        await proc.wait_line("configuration reloaded")
        for _ in range(100):
            found = await devices(proc)
            if found.get("sim/relay", {}).get("online"):
                break
            await asyncio.sleep(0.05)
        assert found["sim/relay"]["online"] is True


async def test_sighup_applies_new_log_levels(tmp_path, port):
    """An operator turns one logger up to chase a fault without restarting the gateway."""
    path = write_config(tmp_path / "c.yaml", port)
    path.write_text(path.read_text().replace("  id: test-gw\n", "  id: test-gw\n  log_level: warning\n"))
    async with daemon(path, port) as proc:
        await proc.wait_notification("READY=1")
        path.write_text(path.read_text().replace(
            "  log_level: warning\n", "  log_level: warning\n  log_levels: {edged.daemon: info, edged.status.http: info}\n"))  # fmt: skip
        proc.signal(signal.SIGHUP)
        await proc.wait_line("configuration reloaded")
        url = f"{proc.url}/api/devices/sim/thermostat/points/setpoint"
        async with aiohttp.ClientSession() as session, session.post(url, json={"value": 21.5}) as response:
            assert response.status == 200, await response.text()
        await proc.wait_line("API write sim/thermostat.setpoint=21.5")
        assert not any("take effect after a restart" in text for text in proc.lines)


async def test_watchdog_is_pinged_when_systemd_asks(tmp_path, port):
    path = write_config(tmp_path / "c.yaml", port)
    async with daemon(path, port, extra_env={"WATCHDOG_USEC": "400000"}) as proc:
        await proc.wait_notification("READY=1")
        await proc.wait_notification("WATCHDOG=1", timeout=5)
        await proc.wait_notification("WATCHDOG=1", timeout=5)


async def test_json_log_format(tmp_path, port):
    path = write_config(tmp_path / "c.yaml", port)
    async with daemon(path, port, args=["--log-format", "json"]) as proc:
        await proc.wait_notification("READY=1")
        line = await proc.wait_line('"device": "sim/meter"')
        entry = json.loads(line)
        assert entry["level"] == "info" and entry["msg"] == "device online"


async def test_invalid_config_exits_2_before_starting(tmp_path, port):
    path = write_config(tmp_path / "c.yaml", port, extra="bogus: 1\n")
    async with daemon(path, port) as proc:
        assert await proc.wait_exit() == 2
        line = path.read_text().splitlines().index("bogus: 1") + 1
        assert f"{path}:{line}: bogus: unknown key" in proc.lines


async def test_coap_status_is_served_when_enabled(tmp_path, port):
    import aiocoap

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        coap_port = udp.getsockname()[1]
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(port=port, extra="").replace(
        "  http: {host: 127.0.0.1, port: " + str(port) + "}",
        "  http: {host: 127.0.0.1, port: " + str(port) + "}\n  coap: {enabled: true, host: 127.0.0.1, port: " + str(coap_port) + "}",
    ))
    async with daemon(path, port) as proc:
        await proc.wait_notification("READY=1")
        await proc.wait_line("sim/meter")
        context = await aiocoap.Context.create_client_context()
        try:
            request = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{coap_port}/api/devices/sim/meter")
            response = await asyncio.wait_for(context.request(request).response, 10)
        finally:
            await context.shutdown()
        assert response.code == aiocoap.CONTENT
        assert json.loads(response.payload)["id"] == "sim/meter"


@pytest.mark.parametrize("clock", ["kernel", "trusted"])
async def test_status_says_whether_the_clock_is_synchronised(tmp_path, port, clock):
    from edged.clock import kernel_clock_synced

    path = write_config(tmp_path / "c.yaml", port)
    path.write_text(path.read_text().replace("state_dir: state", f"state_dir: state\n  clock: {clock}"))
    async with daemon(path, port) as proc:
        await proc.wait_notification("READY=1")
        _, body = await proc.get("/api/status")
        assert body["clock_synced"] is (clock == "trusted" or kernel_clock_synced() is not False)
