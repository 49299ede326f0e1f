"""Errors in rules are configuration errors naming the file, the line, the
rule's id and what is wrong; rules may live in included files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edged.config import load_config
from edged.errors import ConfigError
from edged.rules.config import PointRef, ThresholdTrigger


def problems(tmp_path: Path, text: str, **files: str) -> list[str]:
    (tmp_path / "config.yaml").write_text(textwrap.dedent(text))
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(body))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "config.yaml")
    return [str(p) for p in caught.value.problems]


GOOD = """
- id: first
  triggers: [{type: change, point: dev/a.x}]
  actions: [{type: log, message: hi}]
"""


def test_an_error_names_file_line_rule_id_and_key(tmp_path):
    found = problems(tmp_path, """\
        rules:
          - id: first
            triggers: [{type: change, point: dev/a.x}]
            actions: [{type: log, message: hi}]
          - id: hall-light
            triggers:
              - type: threshold
                point: sim/meter.power
                above: lots
            actions: [{type: log, message: hi}]
        """)
    assert found == [f"{tmp_path / 'config.yaml'}:9: rules[1] (id hall-light).triggers[0].above: "
                     "expected a valid number, unable to parse string as a number; got 'lots'"]  # fmt: skip


def test_an_unknown_trigger_type_lists_the_known_ones(tmp_path):
    found = problems(tmp_path, """\
        rules:
          - id: r
            triggers: [{type: sunrise}]
            actions: [{type: log, message: hi}]
        """)
    assert found == [f"{tmp_path / 'config.yaml'}:3: rules[0] (id r).triggers[0].type: expected one of "
                     "'change', 'threshold', 'device', 'schedule', 'sun', 'command_result', 'event', 'device_event'; "
                     "got 'sunrise'"]  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("triggers: [{type: threshold, point: dev/a.x}]", "needs above:, below: or both"),
        ("triggers: [{type: change, point: nodot}]", "expected a point as DEVICE.KEY"),
        ("triggers: [{type: schedule, cron: 'every day'}]", "expected a cron expression"),
        ("triggers: [{type: schedule, every: 5m, timezone: Mars/Olympus}]", "expected an IANA time zone"),
        ("triggers: [{type: schedule, every: 5m, catch_up: 1m}]", "catch_up applies to cron schedules"),
        ("triggers: [{type: device_event, min_severity: 1200}]", "min_severity: expected less than or equal to 1000"),
        ("triggers: [{type: device_event, severity: 500}]", "triggers[0].severity: unknown key"),
        ("conditions: [{type: expression, expression: \"value('a/b.c').real\"}]", "Attribute is not allowed"),
        ("conditions: [{type: expression, expression: 'open(1)'}]", "unknown name 'open'"),
        ("conditions: [{type: time, after: '25:00'}]", "expected a time of day"),
        ("actions: [{type: write, point: dev/a.x}]", "exactly one of value: or expression"),
        ("actions: [{type: delay}]", "for: required key is missing"),
        ("mode: sometimes", "expected 'single', 'restart', 'queued' or 'parallel'"),
    ],
)
def test_rule_mistakes_are_reported_precisely(tmp_path, rule, message):
    base = {"triggers": "triggers: [{type: change, point: dev/a.x}]", "actions": "actions: [{type: log, message: hi}]"}
    key = rule.split(":", 1)[0]
    lines = [rule if key == k else v for k, v in base.items()]
    if key not in base:
        lines.append(rule)
    body = "\n".join(f"    {line}" for line in lines)
    found = problems(tmp_path, f"rules:\n  - id: oops\n{body}\n")
    assert len(found) == 1, found
    assert "rules[0] (id oops)" in found[0]
    assert message in found[0]


def test_duplicate_rule_ids(tmp_path):
    found = problems(tmp_path, "rules:" + textwrap.indent(GOOD + GOOD, "  "))
    assert found == [f"{tmp_path / 'config.yaml'}:1: rules: two rules share the id 'first'; give each a distinct id"]


def test_rules_from_included_files(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hall.yaml").write_text("rules:" + textwrap.indent(GOOD.replace("first", "hall"), "  "))
    (tmp_path / "config.yaml").write_text("include: [rules/*.yaml]\nrules:" + textwrap.indent(GOOD, "  "))
    config = load_config(tmp_path / "config.yaml")
    assert [r.id for r in config.rules] == ["first", "hall"]
    assert config.rules[0].triggers[0].point == PointRef("dev/a", "x")


def test_an_error_in_an_included_file_names_that_file(tmp_path):
    found = problems(
        tmp_path,
        "include: [rules/*.yaml]\nrules:" + textwrap.indent(GOOD, "  "),
        **{"rules/garden.yaml": """\
            rules:
              - id: garden
                triggers: [{type: change, point: dev/a.x}]
                actions: [{type: write, point: dev/b.y, value: 1, expression: '2'}]
            """},
    )
    assert found == [f"{tmp_path / 'rules' / 'garden.yaml'}:4: rules[1] (id garden).actions[0]: "
                     "a write action needs exactly one of value: or expression"]  # fmt: skip


def test_point_in_mapping_form_allows_dots_in_keys():
    trigger = ThresholdTrigger.model_validate({"type": "threshold", "point": {"device": "opcua/plc", "key": "ns=2.temp"}, "above": 1})
    assert trigger.point == PointRef("opcua/plc", "ns=2.temp")


SUNSET_RULE = """\
    rules:
      - id: evening
        triggers: [{type: sun, event: sunset, after: 10m}]
        actions: [{type: log, message: evening}]
    """


def test_sun_triggers_take_the_gateways_location(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "gateway: {location: {latitude: 48.137, longitude: 11.575}}\n" + textwrap.dedent(SUNSET_RULE)
    )
    (trigger,) = load_config(tmp_path / "config.yaml").rules[0].triggers
    assert (trigger.latitude, trigger.longitude, trigger.offset) == (48.137, 11.575, 600.0)


def test_a_sun_trigger_without_a_location_is_an_error(tmp_path):
    (found,) = problems(tmp_path, SUNSET_RULE)
    assert found.startswith(f"{tmp_path / 'config.yaml'}:3: rules[0] (id evening).triggers[0]: a sun trigger needs")
    assert "gateway.location" in found
