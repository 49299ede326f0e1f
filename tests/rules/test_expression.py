"""The expression sandbox: checked once at load, no attribute access, bounded cost."""

from __future__ import annotations

import pytest
from simpleeval import NumberTooHigh

from edged.rules.expression import MAX_NODES, Expression


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


def test_cost_is_bounded_at_run_time():
    with pytest.raises(NumberTooHigh):
        Expression("trigger ** trigger").evaluate(read({}), trigger=10**7)
