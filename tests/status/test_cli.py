"""`edged status` prints the page's tables from the local API."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from edged.status import cli
from tests.status.conftest import StartDaemon


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


async def test_status_table_lists_adapters_devices_and_values(
    start_daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = await start_daemon("  http: {host: 127.0.0.1, port: 0, token: tok}")
    # Point a configuration at the running API: address and token come from it.
    config = tmp_path / "client.yaml"
    config.write_text(f"status:\n  http: {{host: 127.0.0.1, port: {daemon.status.port}, token: tok}}\n")
    code = await asyncio.to_thread(cli.main, parse(["--config", str(config)]))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "health: ok" in out
    adapter_row = next(line for line in out.splitlines() if line.startswith("sim "))
    assert adapter_row.split()[:4] == ["sim", "simulated", "running", "2/2"]
    setpoint_row = next(line for line in out.splitlines() if "setpoint" in line)
    assert setpoint_row.split()[:5] == ["sim/thermostat", "online", "setpoint", "21", "Cel"]


async def test_wrong_token_and_unreachable_api_are_reported(
    start_daemon: StartDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = await start_daemon("  http: {host: 127.0.0.1, port: 0, token: tok}")
    url = f"http://127.0.0.1:{daemon.status.port}"
    token_file = tmp_path / "token"
    token_file.write_text("wrong\n")
    args = parse(["--url", url, "--token-file", str(token_file), "--config", str(tmp_path / "none.yaml")])
    assert await asyncio.to_thread(cli.main, args) == cli.EXIT_UNREACHABLE
    assert "401" in capsys.readouterr().err
    token_file.write_text("tok\n")
    assert await asyncio.to_thread(cli.main, args) == 0
    args = parse(["--url", "http://127.0.0.1:1", "--config", str(tmp_path / "none.yaml"), "--timeout", "2"])
    assert await asyncio.to_thread(cli.main, args) == cli.EXIT_UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err


def test_each_uplink_has_its_rows_in_the_status_table() -> None:
    status = {
        "gateway": "gw", "version": "1", "uptime": 5, "health": {"status": "ok"}, "adapters": {},
        "outbox": {"depth": 7},
        "uplinks": {"cloud": {"type": "mqtt", "connected": True, "waiting": 0},
                    "site": {"type": "mqtt", "connected": False, "waiting": 7}},
    }  # fmt: skip
    rows = [line.split() for line in cli.render(status, []).splitlines()]
    assert ["outbox", "depth", "7"] in rows
    assert ["uplink", "cloud", "connected", "True"] in rows
    assert ["uplink", "site", "waiting", "7"] in rows
    one = {**status, "uplinks": {"uplink": {"connected": True}}}
    assert ["uplink", "connected", "True"] in [line.split() for line in cli.render(one, []).splitlines()]


def test_failing_devices_adapters_and_uplinks_say_why() -> None:
    problem = {"reason": "no answer within 0.5 s", "since": "2026-01-02T03:04:05.000Z",
               "last": "2026-01-02T03:05:05.000Z", "count": 7}  # fmt: skip
    status = {
        "gateway": "gw", "version": "1", "uptime": 5, "health": {"status": "ok"},
        "adapters": {"mb": {"type": "modbus", "state": "running", "devices": 2, "online": 1,
                            "problem": {**problem, "reason": "cannot connect to tcp://10.0.0.5:502", "count": 1}}},
        "uplinks": {"uplink": {"connected": False, "problem": {**problem, "reason": "connection refused by 10.0.0.9:1883"}}},
    }  # fmt: skip
    devices = [
        {"id": "mb/meter", "online": False, "last_seen": None, "problem": problem, "points": {}},
        {"id": "mb/pump", "online": True, "last_seen": "2026-01-02T03:05:06.000Z", "problem": None, "points": {}},
    ]
    text = cli.render(status, devices)
    since = cli._clock(problem["since"])
    assert f"mb/meter  offline  never      no answer within 0.5 s (7 times since {since})" in text
    assert "mb/pump  online" not in text, "only failing devices are listed with their problem"
    assert f"cannot connect to tcp://10.0.0.5:502 (once since {since})" in text
    rows = [line.split(None, 2) for line in text.splitlines()]
    assert ["uplink", "problem", f"connection refused by 10.0.0.9:1883 (7 times since {since})"] in rows
