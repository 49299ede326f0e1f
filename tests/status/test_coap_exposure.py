"""The CoAP status resources have no authentication: serving them off
loopback takes an explicit ``allow_unauthenticated: true``, or the
configuration is refused with the file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edged.config import load_config
from edged.daemon import Daemon

OPEN_COAP = "status:\n  coap:\n    enabled: true\n    host: 0.0.0.0\n    port: 0\n"


def edged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edged", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_coap_off_loopback_without_opt_in_exits_2(tmp_path: Path, command: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(OPEN_COAP)
    result = edged(command, *(["-c"] if command == "run" else []), str(path))
    assert result.returncode == 2, result.stderr
    assert f"{path}:2: status.coap: host '0.0.0.0' is reachable from the network" in result.stderr
    assert "allow_unauthenticated: true" in result.stderr


def test_the_opt_in_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(OPEN_COAP + "    allow_unauthenticated: true\n")
    result = edged("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert load_config(path).status.coap.allow_unauthenticated is True


def test_coap_server_refuses_an_open_network_listener_even_if_config_was_bypassed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("gateway: {state_dir: state}\n")
    config = load_config(path)
    coap = config.status.coap.model_copy(update={"enabled": True, "host": "::"})
    config = config.model_copy(update={"status": config.status.model_copy(update={"coap": coap})})
    from edged.status.coap import CoapStatusServer

    with pytest.raises(ValueError, match="without allow_unauthenticated"):
        CoapStatusServer(Daemon(config, path).view, config.status.coap)
