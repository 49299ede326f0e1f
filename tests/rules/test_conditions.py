"""Conditions decide whether a fired rule runs: numeric, state, time windows
and weekdays, and/or/not, and sandboxed expressions."""

from __future__ import annotations

import pytest

from tests.rules.conftest import START

# START is Sunday 2025-06-15 15:06:40 UTC (17:06:40 in Berlin).


def rule(conditions: str) -> str:
    return f"""
- id: r
  triggers: [{{type: change, point: dev/motion.occupancy, to: true}}]
  conditions: {conditions}
  actions: [{{type: write, point: dev/lamp.on, value: true}}]
"""


async def fire(devices, clock) -> bool:
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)
    await clock.settle()
    return bool(devices.commands)


@pytest.mark.parametrize(
    ("conditions", "lux", "runs"),
    [
        ("[{type: numeric, point: dev/motion.illuminance, below: 50}]", 20.0, True),
        ("[{type: numeric, point: dev/motion.illuminance, below: 50}]", 80.0, False),
        ("[{type: numeric, point: dev/motion.illuminance, above: 10, below: 50}]", 5.0, False),
        ("[{type: numeric, point: dev/motion.illuminance, below: 50}]", None, False),  # no value yet
        ("[{type: state, point: dev/relay.relay, value: false}]", 20.0, True),
        ("[{type: state, point: dev/relay.relay, value: [true]}]", 20.0, False),
        ("[{type: or, conditions: [{type: state, point: dev/relay.relay, value: true},"
         " {type: numeric, point: dev/motion.illuminance, below: 50}]}]", 20.0, True),
        ("[{type: and, conditions: [{type: state, point: dev/relay.relay, value: true},"
         " {type: numeric, point: dev/motion.illuminance, below: 50}]}]", 20.0, False),
        ("[{type: not, conditions: [{type: state, point: dev/relay.relay, value: true}]}]", 20.0, True),
        ("[{type: not, conditions: [{type: state, point: dev/relay.relay, value: false}]}]", 20.0, False),
        ("[{type: expression, expression: \"value('dev/motion.illuminance') * 2 < 50 and trigger\"}]", 20.0, True),
        ("[{type: expression, expression: \"value('dev/motion.illuminance') * 2 < 50\"}]", 30.0, False),
    ],
)  # fmt: skip
async def test_point_conditions(start_engine, devices, clock, conditions, lux, runs):
    devices.publish("dev/relay.relay", False)
    if lux is not None:
        devices.publish("dev/motion.illuminance", lux)
    await start_engine(rule(conditions))
    assert await fire(devices, clock) is runs


@pytest.mark.parametrize(
    ("conditions", "runs"),
    [
        ("[{type: time, after: '17:00', before: '18:00'}]", True),
        ("[{type: time, after: '18:00'}]", False),
        ("[{type: time, after: '22:00', before: '06:00'}]", False),  # crosses midnight
        ("[{type: time, after: '17:00', before: '06:00'}]", True),
        ("[{type: time, weekdays: [sat, sun]}]", True),
        ("[{type: time, weekdays: [mon, tue, wed, thu, fri]}]", False),
        ("[{type: time, after: 17:00, weekdays: [sun]}]", True),  # unquoted YAML 1.1 time
    ],
)
async def test_time_window_and_weekdays_in_the_gateway_zone(start_engine, devices, clock, conditions, runs):
    await start_engine(rule(conditions), timezone="Europe/Berlin")
    assert clock.now() == START
    assert await fire(devices, clock) is runs


async def test_failing_expression_is_an_error_not_a_crash(start_engine, devices, clock):
    engine = await start_engine(rule("[{type: expression, expression: \"value('dev/meter.power') > 5\"}]"))
    assert await fire(devices, clock) is False  # no value: None > 5 raises TypeError
    assert engine.errors_total == 1
    assert engine.recent[-1]["outcome"].startswith("error:")
    assert await fire(devices, clock) is False
    assert engine.errors_total == 2
