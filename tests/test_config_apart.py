"""Reading the configuration in a child process gives what reading it here gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edged.config import load_config, load_config_apart
from edged.errors import ConfigError

GOOD = """\
gateway: {id: gw, state_dir: state}
outbox: {max_bytes: 1MiB}
uplink: {type: mqtt, host: 127.0.0.1, password: {env: EDGED_TEST_SECRET}}
adapters:
  - type: modbus
    name: plant
    connections:
      - transport: tcp
        host: 127.0.0.1
        devices:
          - id: meter
            points:
              - {key: volts, address: 0, type: float32, unit: V, deadband: 0.5}
              - {key: relay, table: coil, address: 3, writable: true}
"""


def test_the_configuration_read_apart_equals_the_one_read_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_TEST_SECRET", "s3cret")
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    apart = load_config_apart(path)
    assert apart == load_config(path)
    assert apart.uplink is not None and apart.uplink.password is not None
    assert apart.uplink.password.get_secret_value() == "s3cret"  # secrets are resolved in the child, as here
    assert apart.gateway.state_dir == tmp_path / "state"


def test_problems_found_apart_are_raised_here_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("address: 3", "address: 70000").replace("gateway:", "gateway:\n  bogus: 1\ngateway2:"))
    with pytest.raises(ConfigError) as here:
        load_config(path)
    with pytest.raises(ConfigError) as apart:
        load_config_apart(path)
    assert str(apart.value) == str(here.value)
    assert f"{path}:2: gateway.bogus: unknown key" in str(apart.value)


def test_without_fork_it_is_read_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("gateway: {id: gw}\n")
    monkeypatch.delattr(os, "fork")
    assert load_config_apart(path).gateway.id == "gw"
