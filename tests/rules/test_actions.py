"""Actions: write, delay, wait, if/else, choose, sequence, parallel, event, log."""

from __future__ import annotations

import logging

from edged.model import RuleEvent

TRIGGER = "[{type: change, point: dev/motion.occupancy, to: true}]"


def rule(actions: str, extra: str = "") -> str:
    return f"""
- id: r
  triggers: {TRIGGER}
  actions:
{actions}{extra}
"""


def motion(devices) -> None:
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)


async def test_write_a_value_and_an_expression(start_engine, devices, watch, hub):
    devices.publish("dev/meter.power", 1234.0)
    await start_engine(rule("""
    - {type: write, point: dev/lamp.on, value: true}
    - {type: write, point: dev/lamp.level, expression: "min(100, round(value('dev/meter.power') / 100))"}
"""))
    motion(devices)
    await watch.until(lambda: len(devices.commands) == 2)
    assert devices.writes == [("dev/lamp.on", True), ("dev/lamp.level", 12)]
    assert all(c.origin == "rule" for c in devices.commands)
    assert hub.value("dev/lamp", "level").value == 12


async def test_a_rejected_write_is_counted_and_the_run_goes_on(start_engine, devices, watch):
    engine = await start_engine(rule("""
    - {type: write, point: dev/meter.power, value: 5}
    - {type: write, point: dev/lamp.on, value: true}
"""))
    motion(devices)
    await watch.until(lambda: devices.commands)
    assert devices.writes == [("dev/lamp.on", True)]  # meter.power is read-only
    assert engine.errors_total == 1


async def test_delay(start_engine, devices, clock, watch):
    await start_engine(rule("""
    - {type: write, point: dev/lamp.on, value: true}
    - {type: delay, for: 5m}
    - {type: write, point: dev/lamp.on, value: false}
"""))
    motion(devices)
    await watch.until(lambda: devices.commands)
    await clock.advance(299)
    assert devices.writes == [("dev/lamp.on", True)]
    await clock.advance(1)
    assert devices.writes == [("dev/lamp.on", True), ("dev/lamp.on", False)]


WAIT = """
    - {type: write, point: dev/relay.relay, value: true}
    - type: wait
      trigger: {type: threshold, point: dev/relay.power, above: 10}
      timeout: 30s
      on_timeout: ON_TIMEOUT
    - {type: write, point: dev/lamp.on, value: true}
"""


async def test_wait_for_a_trigger(start_engine, devices, clock):
    devices.publish("dev/relay.power", 0.0)
    await start_engine(rule(WAIT.replace("ON_TIMEOUT", "stop")))
    motion(devices)
    await clock.advance(10)
    assert devices.writes == [("dev/relay.relay", True)]
    devices.publish("dev/relay.power", 60.0)
    await clock.settle()
    assert devices.writes == [("dev/relay.relay", True), ("dev/lamp.on", True)]


async def test_wait_timeout_stops_the_run(start_engine, devices, clock):
    devices.publish("dev/relay.power", 0.0)
    engine = await start_engine(rule(WAIT.replace("ON_TIMEOUT", "stop")))
    motion(devices)
    await clock.advance(30)
    assert devices.writes == [("dev/relay.relay", True)]
    assert engine.recent[-1]["outcome"].startswith("stopped")
    devices.publish("dev/relay.power", 60.0)  # too late: nobody waits any more
    await clock.settle()
    assert devices.writes == [("dev/relay.relay", True)]


async def test_wait_timeout_continues(start_engine, devices, clock):
    devices.publish("dev/relay.power", 0.0)
    await start_engine(rule(WAIT.replace("ON_TIMEOUT", "continue")))
    motion(devices)
    await clock.advance(29)
    assert devices.writes == [("dev/relay.relay", True)]
    await clock.advance(1)
    assert devices.writes == [("dev/relay.relay", True), ("dev/lamp.on", True)]


async def test_if_else(start_engine, devices, watch):
    await start_engine(rule("""
    - type: if
      conditions: [{type: numeric, point: dev/motion.illuminance, below: 50}]
      then: [{type: write, point: dev/lamp.on, value: true}]
      else: [{type: write, point: dev/lamp.on, value: false}]
"""))
    devices.publish("dev/motion.illuminance", 10.0)
    motion(devices)
    await watch.until(lambda: len(devices.commands) == 1)
    devices.publish("dev/motion.illuminance", 500.0)
    motion(devices)
    await watch.until(lambda: len(devices.commands) == 2)
    assert devices.writes == [("dev/lamp.on", True), ("dev/lamp.on", False)]


async def test_choose_takes_the_first_matching_choice_or_the_default(start_engine, devices, watch):
    await start_engine(rule("""
    - type: choose
      choices:
        - conditions: [{type: numeric, point: dev/motion.illuminance, below: 10}]
          actions: [{type: write, point: dev/lamp.level, value: 100}]
        - conditions: [{type: numeric, point: dev/motion.illuminance, below: 50}]
          actions: [{type: write, point: dev/lamp.level, value: 50}]
      default: [{type: write, point: dev/lamp.level, value: 0}]
"""))
    for expected, lux in enumerate((5.0, 30.0, 80.0), start=1):
        devices.publish("dev/motion.illuminance", lux)
        motion(devices)
        await watch.until(lambda n=expected: len(devices.commands) == n)
    assert [v for _, v in devices.writes] == [100, 50, 0]


async def test_sequence_and_parallel(start_engine, devices, clock, watch):
    await start_engine(rule("""
    - type: parallel
      actions:
        - type: sequence
          actions:
            - {type: delay, for: 10s}
            - {type: write, point: dev/lamp.on, value: true}
        - type: sequence
          actions:
            - {type: delay, for: 5s}
            - {type: write, point: dev/relay.relay, value: true}
    - {type: write, point: dev/lamp.level, value: 1}
"""))
    motion(devices)
    await clock.advance(5)
    assert devices.writes == [("dev/relay.relay", True)]  # the branches run at once
    await clock.advance(5)
    assert devices.writes == [("dev/relay.relay", True), ("dev/lamp.on", True), ("dev/lamp.level", 1)]



async def test_a_wait_that_stops_inside_a_branch_stops_the_whole_run(start_engine, devices, clock):
    devices.publish("dev/relay.power", 0.0)
    engine = await start_engine(rule("""
    - type: parallel
      actions:
        - type: wait
          trigger: {type: threshold, point: dev/relay.power, above: 10}
          timeout: 5s
          on_timeout: stop
        - type: sequence
          actions:
            - {type: delay, for: 10s}
            - {type: write, point: dev/lamp.on, value: true}
    - {type: write, point: dev/lamp.level, value: 1}
"""))
    motion(devices)
    await clock.advance(60)
    assert devices.writes == []  # the other branch was cancelled, and nothing after the block ran
    assert engine.recent[-1]["outcome"] == "stopped: wait for threshold timed out"


async def test_event_goes_to_the_hub(start_engine, devices, watch):
    await start_engine(rule("    - {type: event, name: motion, data: {room: hall, level: 3}}"))
    motion(devices)
    event = await watch.until(lambda: next((e for e in watch.events if isinstance(e, RuleEvent)), None))
    assert (event.rule_id, event.name, event.data) == ("r", "motion", {"room": "hall", "level": 3})


async def test_log(start_engine, devices, clock, caplog):
    await start_engine(rule("    - {type: log, message: someone in the hall, level: warning}"))
    with caplog.at_level(logging.INFO, logger="edged.rules"):
        motion(devices)
        await clock.settle()
    record = next(r for r in caplog.records if "someone in the hall" in r.getMessage())
    assert record.levelno == logging.WARNING
    assert record.rule == "r"
