"""Conditions compiled once into plain functions of a ``Scope`` (the Hub's
current values, the time and the value that fired the rule).

A point that has no value yet, or whose last reading is BAD, makes numeric
and state conditions false: a rule never acts on what it cannot see.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from edged.hub import Hub
from edged.model import Quality, Value
from edged.rules import config as cfg
from edged.rules.config import WEEKDAYS, PointRef
from edged.rules.expression import Expression

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Scope:
    """What conditions and expressions see while a rule runs."""

    hub: Hub
    now: float
    zone: ZoneInfo
    trigger: Value = None

    def value(self, point: PointRef) -> Value:
        reading = self.hub.values.get(point)
        if reading is None or reading.quality is Quality.BAD:
            return None
        return reading.value

    def read(self, point: str) -> Value:
        device, _, key = point.rpartition(".")
        return self.value(PointRef(device, key))


Check = Callable[[Scope], bool]


class ExpressionFailed(Exception):
    """An expression raised while evaluated (e.g. a comparison of None with a number)."""


def evaluate(expression: Expression, scope: Scope) -> Any:
    try:
        return expression.evaluate(scope.read, scope.trigger)
    except Exception as exc:
        raise ExpressionFailed(f"{expression.text!r}: {type(exc).__name__}: {exc}") from exc


def compile_conditions(conditions: Sequence[Any]) -> Check:
    """One check that holds when every condition does (true for none)."""
    checks = [compile_condition(c) for c in conditions]
    if not checks:
        return lambda scope: True
    if len(checks) == 1:
        return checks[0]
    return lambda scope: all(check(scope) for check in checks)


def compile_condition(config: Any) -> Check:
    if isinstance(config, cfg.NumericCondition):
        return _numeric(config)
    if isinstance(config, cfg.StateCondition):
        expected = config.value if isinstance(config.value, list) else [config.value]
        point = config.point
        return lambda scope: (value := scope.value(point)) is not None and value in expected
    if isinstance(config, cfg.TimeCondition):
        return _time(config)
    if isinstance(config, (cfg.AndCondition, cfg.OrCondition, cfg.NotCondition)):
        checks = [compile_condition(c) for c in config.conditions]
        if isinstance(config, cfg.AndCondition):
            return lambda scope: all(check(scope) for check in checks)
        if isinstance(config, cfg.OrCondition):
            return lambda scope: any(check(scope) for check in checks)
        return lambda scope: not any(check(scope) for check in checks)
    if isinstance(config, cfg.ExpressionCondition):
        expression = Expression(config.expression)
        return lambda scope: bool(evaluate(expression, scope))
    raise TypeError(f"unknown condition {config!r}")


def _numeric(config: cfg.NumericCondition) -> Check:
    above, below, point = config.above, config.below, config.point

    def check(scope: Scope) -> bool:
        value = scope.value(point)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return (above is None or value > above) and (below is None or value < below)

    return check


def _time(config: cfg.TimeCondition) -> Check:
    after, before = config.after, config.before
    days = None if config.weekdays is None else {WEEKDAYS.index(d) for d in config.weekdays}

    def check(scope: Scope) -> bool:
        local = dt.datetime.fromtimestamp(scope.now, scope.zone)
        if days is not None and local.weekday() not in days:
            return False
        now = local.time()
        if after is not None and before is not None:
            return after <= now < before if after <= before else (now >= after or now < before)
        return (after is None or now >= after) and (before is None or now < before)

    return check
