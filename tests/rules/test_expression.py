"""The expression sandbox: checked once at load, no attribute access, bounded cost."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edged import cli
from edged.rules.expression import MAX_INT_BITS, MAX_NODES, MAX_STRING, Expression, TooLarge

ROOT = Path(__file__).resolve().parents[2]


def read(values: dict[str, object]):
    return values.get


def test_reads_points_and_the_trigger_value():
    expression = Expression("value('sim/meter.power') / 2 if trigger else -1")
    assert expression.points == frozenset({"sim/meter.power"})
    assert expression.evaluate(read({"sim/meter.power": 500.0}), trigger=True) == 250.0
    assert expression.evaluate(read({}), trigger=False) == -1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("value('a/b.c').__class__", "Attribute is not allowed"),
        ("(1).real", "Attribute is not allowed"),
        ("[1, 2][0]", "is not allowed"),
        ("[x for x in 'abc']", "ListComp is not allowed"),
        ("(lambda: 1)", "Lambda is not allowed"),
        ("f'{trigger}'", "JoinedStr is not allowed"),
        ("__import__('os')", "unknown name '__import__'"),
        ("open", "unknown name 'open'"),
        ("value(name)", "value() takes one quoted point"),
        ("value('nodot')", "expected a point as DEVICE.KEY"),
        ("max(x=1)", "only plain calls"),
        ("1 +", "invalid expression"),
        (" + ".join(["1"] * (MAX_NODES // 2 + 1)), "expression too long"),
        ("1" * 1001, "at most 1000 characters"),
    ],
)
def test_refused_at_load(text, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        Expression(text)


def test_tuples_formatting_and_large_enough_numbers_work():
    assert Expression("trigger in (1, 2, 3)").evaluate(read({}), trigger=2) is True
    assert Expression("'%5.1f W' % value('a/b.c')").evaluate(read({"a/b.c": 3.14159})) == "  3.1 W"
    assert Expression("'%s/%s' % (trigger, 2)").evaluate(read({}), trigger=1) == "1/2"
    assert Expression("2 ** (trigger - 1) - 1").evaluate(read({}), trigger=MAX_INT_BITS).bit_length() == MAX_INT_BITS - 1
    assert Expression("round(trigger, -2)").evaluate(read({}), trigger=1234) == 1200
    assert len(Expression("'ab' * trigger").evaluate(read({}), trigger=MAX_STRING // 2)) == MAX_STRING


@pytest.mark.parametrize(
    ("text", "trigger"),
    [
        ("trigger ** trigger", 10**7),
        ("'ab' * trigger", MAX_STRING),
        ("(trigger,) * 2", 1),
        ("1 << trigger", MAX_INT_BITS),
        ("('%0' + str(trigger) + 'd') % 0", 10**9),
        ("('%' + '*d') % (trigger, 0)", 10**9),
        ("round(1, -trigger)", 10**9),
        ("int('f' * trigger, 16)", 5000),
        ("str(2 ** 4000) * trigger", 9),
    ],
)
def test_a_too_large_result_is_refused_before_it_is_computed(text, trigger):
    with pytest.raises(TooLarge):
        Expression(text).evaluate(read({}), trigger=trigger)


DEVICES = """\
    adapters:
      - type: simulated
        name: sim
        devices:
          - {id: relay, kind: relay}
          - {id: meter, kind: energy_meter}
    rules:
      - id: bomb
        triggers: [{type: change, point: sim/meter.power}]
        actions:
          - {type: write, point: sim/relay.relay, expression: "%s"}
    """


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("value('sim/meter.power') > 4000000 ** 4000000", "4000000 ** 4000000 has more than 4096 bits"),
        ("trigger or 9 ** 9 ** 9", "9 ** 387420489 has more than 4096 bits"),
        ("'a' * 10 ** 9", "a string of 1000000000 characters"),
        ("str(((0,) * 100000,) * 100000)", "a tuple cannot be repeated"),
        ("1 << 10 ** 9", "1 << 1000000000 has more than 4096 bits"),
        ("'%0999999999d' % trigger", "'%' formatting takes widths and precisions of at most 100"),
        ("trigger and round(5, -10 ** 9)", "round() takes at most 1000 digits"),
    ],
)
def test_check_config_refuses_a_constant_part_too_large_to_compute(tmp_path, capsys, text, found):
    (tmp_path / "config.yaml").write_text(textwrap.dedent(DEVICES % text))
    assert cli.main(["check-config", str(tmp_path / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path / 'config.yaml'}:11: rules[0] (id bomb).actions[0].expression: ")
    assert "too large to compute" in err
    assert found in err


def run_engine(rules: str, *steps: tuple[str, object]) -> dict:
    """Run ``rules`` in a child process; one that does not finish within 30 s fails the test."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.rules.run_engine", rules, json.dumps(steps)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("where", "text", "hostile"),
    [
        ("conditions", "[{type: expression, expression: 'trigger ** trigger > 0'}]", 4_000_000),
        ("write", "round(1, -trigger)", 100_000_000),
        ("write", "int(('%0' + str(trigger) + 'd') % 0)", 100_000_000),
    ],
)
def test_a_hostile_value_fails_the_firing_fast_and_the_rule_goes_on(where, text, hostile):
    conditions, write = (text, "trigger") if where == "conditions" else ("[]", text)
    outcome = run_engine(
        f"""
        - id: hostile
          triggers: [{{type: change, point: dev/meter.power}}]
          conditions: {conditions}
          actions: [{{type: write, point: dev/lamp.level, expression: "{write}"}}]
        """,
        ("dev/meter.power", 0), ("dev/meter.power", hostile), ("dev/meter.power", 3),
    )  # fmt: skip
    assert outcome["errors_total"] == 1
    assert outcome["outcomes"][0].startswith("error: ") and "TooLarge" in outcome["outcomes"][0]
    assert outcome["outcomes"][1] == "done"  # the next reading runs the rule as usual
    assert len(outcome["writes"]) == 1
    [line] = outcome["log"]
    assert line["level"] == "ERROR" and line["rule"] == "hostile" and line["message"].startswith("rule hostile: ")
