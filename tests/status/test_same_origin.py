"""What a web page in the user's browser can send to the HTTP API, replayed
with aiohttp's client: a write that is not JSON, a write from a foreign
origin and a request under a foreign name (DNS rebinding) are refused; the
API's own pages, scripts and the names the operator listed still work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from edged.daemon import Daemon
from tests.status.conftest import StartDaemon, http_url

SETPOINT = "/api/devices/sim/thermostat/points/setpoint"
WRITES = [
    (SETPOINT, {"value": 27}),
    ("/api/zigbee/permit", {"seconds": 60}),
    ("/api/zigbee/remove", {"device": "sim/relay"}),
]


def setpoint(daemon: Daemon) -> object:
    return daemon.hub.value("sim/thermostat", "setpoint").value


async def post(daemon: Daemon, path: str, headers: dict[str, str], **body: object) -> tuple[int, object]:
    """POST to the API; its status and JSON answer."""
    async with aiohttp.ClientSession() as session, session.post(http_url(daemon) + path, headers=headers, **body) as response:
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize(("path", "body"), WRITES, ids=["point", "zigbee-permit", "zigbee-remove"])
async def test_a_write_sent_as_text_plain_is_415(start_daemon: StartDaemon, path: str, body: dict) -> None:
    """A cross-site form or ``no-cors`` fetch can send JSON text, but only as text/plain."""
    daemon = await start_daemon()
    status, answer = await post(daemon, path, {"Content-Type": "text/plain"}, json=body)
    assert status == 415 and "application/json" in answer["error"]
    assert setpoint(daemon) == 21.0


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain;charset=UTF-8", None]
)
async def test_a_write_in_any_form_encoding_or_none_is_415(start_daemon: StartDaemon, content_type: str | None) -> None:
    daemon = await start_daemon()
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, _ = await post(daemon, SETPOINT, headers, data=b'{"value": 27}')
    assert status == 415
    assert setpoint(daemon) == 21.0


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "https://127.0.0.1", "null"])
async def test_a_json_write_from_a_foreign_origin_is_403(start_daemon: StartDaemon, origin: str) -> None:
    daemon = await start_daemon()
    status, answer = await post(daemon, SETPOINT, {"Origin": origin}, json={"value": 27})
    assert status == 403 and repr(origin) in answer["error"]
    assert setpoint(daemon) == 21.0


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
async def test_a_json_write_from_the_apis_own_origin_works(start_daemon: StartDaemon, name: str) -> None:
    daemon = await start_daemon()
    own = f"{name}:{daemon.status.port}"
    headers = {"Host": own, "Origin": f"http://{own}"}
    status, answer = await post(daemon, SETPOINT, headers, json={"value": 23.5})
    assert status == 200, answer
    assert setpoint(daemon) == 23.5


@pytest.mark.parametrize("path", ["/api/devices", "/health", "/", "/metrics"])
async def test_a_request_under_a_foreign_host_name_is_421(start_daemon: StartDaemon, path: str) -> None:
    """A page whose name was rebound to 127.0.0.1 reads nothing: its requests carry its own name."""
    daemon = await start_daemon()
    async with aiohttp.ClientSession() as session:
        for host in (f"rebound.example:{daemon.status.port}", "127.0.0.1:1", f"localhost.evil.example:{daemon.status.port}"):
            async with session.get(http_url(daemon) + path, headers={"Host": host}) as response:
                assert response.status == 421, host
                assert "status.http.allowed_hosts" in (await response.json())["error"]
        async with session.post(
            http_url(daemon) + SETPOINT, json={"value": 27}, headers={"Host": f"rebound.example:{daemon.status.port}"}
        ) as response:
            assert response.status == 421
    assert setpoint(daemon) == 21.0


async def test_allowed_hosts_and_origins_let_the_operator_name_the_gateway(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(
        "  http:\n    host: 127.0.0.1\n    port: 0\n    allowed_hosts: [Gateway.LAN]\n"
        "    allowed_origins: ['https://dashboard.example']"
    )
    port = daemon.status.port
    async with aiohttp.ClientSession() as session:
        async with session.get(http_url(daemon) + "/api/devices", headers={"Host": f"gateway.lan:{port}"}) as response:
            assert response.status == 200
        async with session.get(http_url(daemon) + "/api/devices", headers={"Host": f"other.lan:{port}"}) as response:
            assert response.status == 421
        lan = {"Host": f"gateway.lan:{port}", "Origin": f"http://gateway.lan:{port}"}
        async with session.post(http_url(daemon) + SETPOINT, json={"value": 22}, headers=lan) as response:
            assert response.status == 200
        assert setpoint(daemon) == 22.0
        dashboard = {"Origin": "https://dashboard.example"}
        async with session.post(http_url(daemon) + SETPOINT, json={"value": 23}, headers=dashboard) as response:
            assert response.status == 200
        assert setpoint(daemon) == 23.0
        other = {"Origin": "https://other.example"}
        async with session.post(http_url(daemon) + SETPOINT, json={"value": 24}, headers=other) as response:
            assert response.status == 403
    assert setpoint(daemon) == 23.0


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("entries", "line", "expected"),
    [
        ("allowed_hosts: [gateway.lan, 'http://gateway.lan']", 4, "status.http.allowed_hosts[1]: expected a host name"),
        ("allowed_hosts: ['gateway.lan:99999']", 4, "status.http.allowed_hosts[0]: expected a port from 1 to 65535"),
        ("allowed_origins: [gateway.lan]", 4, "status.http.allowed_origins[0]: expected an origin"),
    ],
    ids=["host-with-scheme", "host-bad-port", "origin-without-scheme"],
)
def test_a_malformed_allowed_entry_is_a_config_error(tmp_path: Path, entries: str, line: int, expected: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"status:\n  http:\n    port: 8080\n    {entries}\n")
    result = check_config(path)
    assert result.returncode == 2, result.stderr
    assert f"{path}:{line}: {expected}" in result.stderr
