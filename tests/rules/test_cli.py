"""``edged rules check`` and ``edged rules test``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from edged.rules import cli

RULES = textwrap.dedent("""\
    gateway: {timezone: Europe/Berlin}
    rules:
      - id: pump
        mode: restart
        triggers: [{type: threshold, point: sim/meter.power, above: 1000, for: 10s}]
        actions:
          - {type: write, point: sim/relay.relay, value: true}
          - {type: event, name: pump_on, data: {why: overload}}
          - {type: delay, for: 5m}
          - {type: write, point: sim/relay.relay, value: false}
      - id: night
        triggers: [{type: change, point: sim/meter.power}]
        conditions: [{type: time, after: '22:00', before: '06:00'}]
        actions: [{type: log, message: power changed at night}]
    """)


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.main(parser.parse_args(argv))


def test_check_lists_rules_and_what_wakes_them(tmp_path, capsys):
    (tmp_path / "rules.yaml").write_text(RULES)
    assert run("check", str(tmp_path / "rules.yaml")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "pump: threshold sim/meter.power above 1000 for 10 s",
        "night: change sim/meter.power",
        f"{tmp_path / 'rules.yaml'}: ok (2 rule(s))",
    ]


def test_check_reports_errors_with_line_and_rule_id_and_exits_2(tmp_path, capsys):
    (tmp_path / "rules.yaml").write_text(RULES.replace("for: 5m", "for: soon"))
    assert run("check", str(tmp_path / "rules.yaml")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'rules.yaml'}:9: rules[0] (id pump).actions[2].for: expected a duration")



DEVICES = textwrap.dedent("""\
    adapters:
      - type: simulated
        name: sim
        devices:
          - {id: relay, kind: relay}
          - {id: meter, kind: energy_meter}
      - type: zigbee
        name: zigbee
        radio: simulated
    """)


def test_check_names_points_no_configured_device_has(tmp_path, capsys):
    (tmp_path / "rules.yaml").write_text(DEVICES + textwrap.dedent("""\
        rules:
          - id: overload
            triggers: [{type: threshold, point: sim/meter.powr, above: 1000}]
            conditions: [{type: state, point: "zigbee/00:12:4b:00:00:00:00:01.occupancy", value: true}]
            actions:
              - {type: write, point: sim/relay.relay, value: false}
              - {type: write, point: sim/meter.power, value: 0}
        """))
    assert run("check", str(tmp_path / "rules.yaml")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{tmp_path / 'rules.yaml'}:12: rules[0] (id overload).triggers[0].point: "
        "device sim/meter has no point 'powr' (it has voltage, current, power, energy)",
        f"{tmp_path / 'rules.yaml'}:16: rules[0] (id overload).actions[1].point: sim/meter.power is not writable",
    ]  # the Zigbee point is not checked: Zigbee devices appear when they join


def test_check_passes_rules_whose_points_exist(tmp_path, capsys):
    (tmp_path / "rules.yaml").write_text(RULES + DEVICES)
    assert run("check", str(tmp_path / "rules.yaml")) == 0

def test_replay_prints_commands_with_times_without_touching_devices(tmp_path, capsys):
    (tmp_path / "rules.yaml").write_text(RULES)
    lines = [
        {"ts": 1750000000, "point": "sim/meter.power", "value": 500},
        {"ts": 1750000001, "point": "sim/meter.power", "value": 1500},
        {"ts": "2025-06-15T15:06:45Z", "device": "sim/meter", "key": "power", "value": 900},  # leaves: for: cancelled
        {"ts": "2025-06-15T15:06:50Z", "point": "sim/meter.power", "value": 1200},
        {"ts": 1750000030, "device": "sim/relay", "online": False},
    ]
    (tmp_path / "rec.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert run("test", str(tmp_path / "rules.yaml"), "--readings", str(tmp_path / "rec.jsonl"), "--after", "10m") == 0
    assert capsys.readouterr().out.splitlines() == [
        "2025-06-15T15:07:00.000Z  pump  write sim/relay.relay = true",
        '2025-06-15T15:07:00.000Z  pump  event pump_on {"why": "overload"}',
        "2025-06-15T15:12:00.000Z  pump  write sim/relay.relay = false",
        "replayed 5 line(s); 1 rule run(s), 0 error(s)",
    ]
    assert not (tmp_path / "timers.json").exists()


def test_replay_rejects_a_bad_recording(tmp_path, capsys):
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "rec.jsonl").write_text('{"ts": 5, "point": "sim/meter.power", "value": 1}\n{"ts": 4, "point": "x.y", "value": 1}\n')
    assert run("test", str(tmp_path / "rules.yaml"), "--readings", str(tmp_path / "rec.jsonl")) == 2
    assert "line 2: ts goes back in time" in capsys.readouterr().err


def test_the_cli_module_is_cheap_to_import():
    code = "import sys, edged.rules.cli; print(sorted(m for m in ('simpleeval', 'croniter', 'edged.rules.engine') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parent).stdout
    assert out.strip() == "[]"
