"""``edged check-config`` accepts the example and rejects bad files with
exit code 2 and a message naming the file, the line and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edged.config import load_config
from edged.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"

GOOD = """\
gateway:
  id: test
adapters:
  - type: simulated
    name: sim
    devices:
      - {id: t1, kind: thermostat}
"""


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_example_passes():
    result = check(EXAMPLE)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        (GOOD.replace("  id: test", "  id: test\n  colour: blue"), 3, "gateway.colour: unknown key"),
        (GOOD + "    interval: soon\n", 8, "adapters[0].interval: expected a duration"),
        (
            GOOD.replace("kind: thermostat", "kind: toaster"),
            7,
            "adapters[0].devices[0].kind: expected 'thermostat', 'relay' or 'energy_meter'; got 'toaster'",
        ),
        (GOOD.replace("type: simulated", "type: modbsu"), 4, "adapters[0].type: expected one of"),
        (GOOD.replace("status", "x") + "status:\n  http:\n    port: 99999\n", 10, "status.http.port: expected"),
        (GOOD.replace("  id: test", "  id: [test"), 3, "YAML syntax error"),
        (GOOD + "gateway:\n  id: again\n", 8, "gateway: duplicate key"),
    ],
    ids=["unknown-key", "wrong-duration", "wrong-enum", "unknown-adapter", "out-of-range", "yaml-syntax", "duplicate-key"],
)
def test_bad_config_exits_2_naming_file_line_and_key(tmp_path, text, line, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = check(path)
    assert result.returncode == 2
    assert f"{path}:{line}:" in result.stderr
    assert expected in result.stderr


def test_every_problem_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("  id: test", "  id: test\n  colour: blue") + "    interval: -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [p.path for p in caught.value.problems] == ["gateway.colour", "adapters[0].interval"]


def test_included_files_are_merged_with_their_own_lines(tmp_path):
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "extra.yaml").write_text(
        "adapters:\n  - type: simulated\n    name: sim2\n    devices:\n      - {id: r, kind: relais}\n"
    )
    (tmp_path / "main.yaml").write_text(GOOD + "include: [more/*.yaml]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "main.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.path) == (str(tmp_path / "more" / "extra.yaml"), 5, "adapters[1].devices[0].kind")


def test_secret_from_environment_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGED_TEST_TOKEN", "from-env")
    (tmp_path / "token").write_text("from-file\n")
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + "status:\n  http:\n    token: {env: EDGED_TEST_TOKEN}\n")
    assert load_config(path).status.http.token.get_secret_value() == "from-env"
    path.write_text(GOOD + f"status:\n  http:\n    token: {{file: {tmp_path / 'token'}}}\n")
    assert load_config(path).status.http.token.get_secret_value() == "from-file"
    monkeypatch.delenv("EDGED_TEST_TOKEN")
    path.write_text(GOOD + "status:\n  http:\n    token: {env: EDGED_TEST_TOKEN}\n")
    with pytest.raises(ConfigError, match="environment variable EDGED_TEST_TOKEN is not set"):
        load_config(path)


def test_state_dir_is_relative_to_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    assert load_config(path).gateway.state_dir == tmp_path / "state"


def test_unknown_timezone_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("  id: test", "  id: test\n  timezone: Europe/Atlantis"))
    with pytest.raises(ConfigError, match=r"c.yaml:3: gateway.timezone: expected an IANA time zone .*; got 'Europe/Atlantis'"):
        load_config(path)


MERGED = """\
gateway: {id: test}
meter: &meter
  unit_id: 7
  interval: 1s
  points:
    - {key: volts, address: 0, type: float32}
adapters:
  - type: modbus
    name: plant
    connections:
      - transport: tcp
        host: 127.0.0.1
        devices:
          - <<: *meter
            id: m1
          - <<: *meter
            id: m2
            unit_id: 8
          - <<: [{interval: 2s}, *meter]
            id: m3
            fail_after: 0
"""


def test_merge_keys_take_the_anchor_s_settings_and_its_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MERGED.replace("meter: &meter", "x-meter: &meter"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = [(p.line, p.path) for p in caught.value.problems]
    assert (21, "adapters[0].connections[0].devices[2].fail_after") in problems, caught.value  # nothing about m2's unit_id
    assert all("duplicate" not in str(p) for p in caught.value.problems)
    path.write_text(MERGED.replace("meter: &meter", "x-meter: &meter").replace("fail_after: 0", "unit_id: 9"))
    with pytest.raises(ConfigError) as caught:  # the anchor's own place is no configuration key
        load_config(path)
    assert [(p.line, p.path, p.message) for p in caught.value.problems] == [(2, "x-meter", "unknown key")]


def test_a_command_loads_only_its_own_code(tmp_path):
    """Each command imports what it needs: checking a file does not load the
    demo, the status client or any adapter's commands (whose memory a running
    gateway would otherwise carry)."""
    config = tmp_path / "config.yaml"
    config.write_text(GOOD)
    script = (
        "import sys\n"
        "from edged.cli import main\n"
        f"code = main(['check-config', {str(config)!r}])\n"
        "print(' '.join(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "edged.config" in loaded
    others = {"edged.demo", "edged.status.client", "edged.status.cli", "edged.rules.cli", "edged.provision",
              "edged.adapters.zigbee.cli", "edged.adapters.ble.cli", "edged.adapters.opcua.cli"}  # fmt: skip
    assert not others & loaded
