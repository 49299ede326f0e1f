"""Pending timers survive a restart of the engine (a new instance on the
same state directory), and a reload keeps the state of unchanged rules."""

from __future__ import annotations

import asyncio
import json

from edged.rules.engine import RulesEngine
from tests.rules.conftest import parse_rules

RELAY_FOR_5_MIN = """
- id: pump-run
  triggers: [{type: change, point: dev/motion.occupancy, to: true}]
  actions:
    - {type: write, point: dev/relay.relay, value: true}
    - type: if
      conditions: [{type: state, point: dev/relay.relay, value: true}]
      then:
        - {type: delay, for: 5m}
        - {type: write, point: dev/relay.relay, value: false}
    - {type: write, point: dev/lamp.on, value: false}
"""


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_delay_survives_a_restart(hub, devices, clock, tmp_path):
    state = tmp_path / "rules"
    first = RulesEngine(parse_rules(RELAY_FOR_5_MIN), hub, state, "UTC", clock)
    task = asyncio.create_task(first.run())
    await first.started.wait()
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)
    await clock.advance(60)
    assert devices.writes == [("dev/relay.relay", True)]
    await stop(task)  # the gateway goes down with the relay on

    saved = json.loads((state / "timers.json").read_text())["timers"]
    assert [e["kind"] for e in saved.values()] == ["delay"]

    await clock.advance(600)  # down for 10 minutes: the delay ended meanwhile
    assert devices.writes == [("dev/relay.relay", True)]
    second = RulesEngine(parse_rules(RELAY_FOR_5_MIN), hub, state, "UTC", clock)
    task = asyncio.create_task(second.run())
    await second.started.wait()
    await clock.settle()
    # The relay goes off, and the run finishes the rest of the rule (outside the if).
    assert devices.writes == [("dev/relay.relay", True), ("dev/relay.relay", False), ("dev/lamp.on", False)]
    await stop(task)
    assert json.loads((state / "timers.json").read_text())["timers"] == {}


async def test_a_delay_resumes_at_its_due_time(hub, devices, clock, tmp_path):
    state = tmp_path / "rules"
    first = RulesEngine(parse_rules(RELAY_FOR_5_MIN), hub, state, "UTC", clock)
    task = asyncio.create_task(first.run())
    await first.started.wait()
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)
    await clock.advance(60)
    await stop(task)
    second = RulesEngine(parse_rules(RELAY_FOR_5_MIN), hub, state, "UTC", clock)
    task = asyncio.create_task(second.run())
    await second.started.wait()
    await clock.advance(239)
    assert devices.writes == [("dev/relay.relay", True)]
    await clock.advance(1)
    assert devices.writes[1] == ("dev/relay.relay", False)
    await stop(task)


async def test_a_changed_rule_drops_its_saved_delay(hub, devices, clock, tmp_path):
    state = tmp_path / "rules"
    first = RulesEngine(parse_rules(RELAY_FOR_5_MIN), hub, state, "UTC", clock)
    task = asyncio.create_task(first.run())
    await first.started.wait()
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)
    await clock.settle()
    await stop(task)
    second = RulesEngine(parse_rules(RELAY_FOR_5_MIN.replace("5m", "6m")), hub, state, "UTC", clock)
    task = asyncio.create_task(second.run())
    await second.started.wait()
    await clock.advance(3600)
    assert devices.writes == [("dev/relay.relay", True)]
    await stop(task)


FOR_RULE = """
- id: overload
  triggers: [{type: threshold, point: dev/meter.power, above: 1000, for: 10m}]
  actions: [{type: write, point: dev/relay.relay, value: false}]
"""


async def test_a_for_timer_survives_a_restart(hub, devices, clock, tmp_path):
    state = tmp_path / "rules"
    devices.publish("dev/meter.power", 100.0)
    first = RulesEngine(parse_rules(FOR_RULE), hub, state, "UTC", clock)
    task = asyncio.create_task(first.run())
    await first.started.wait()
    devices.publish("dev/meter.power", 2000.0)
    await clock.advance(300)
    await stop(task)
    hub.values.clear()  # after a real restart the Hub knows nothing yet
    second = RulesEngine(parse_rules(FOR_RULE), hub, state, "UTC", clock)
    task = asyncio.create_task(second.run())
    await second.started.wait()
    await clock.advance(299)
    assert devices.writes == []
    await clock.advance(1)
    assert devices.writes == [("dev/relay.relay", False)]
    await stop(task)


async def test_reload_keeps_unchanged_rules_running_and_restarts_changed_ones(start_engine, devices, clock):
    engine = await start_engine(RELAY_FOR_5_MIN + FOR_RULE)
    devices.publish("dev/meter.power", 100.0)
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)
    devices.publish("dev/meter.power", 2000.0)  # arms overload's 10-minute timer
    await clock.advance(60)
    kept = engine.rules["pump-run"]

    # Same pump-run (compared by value, from freshly parsed YAML); overload changed.
    engine.reload(parse_rules(RELAY_FOR_5_MIN + FOR_RULE.replace("10m", "20m")))
    assert engine.rules["pump-run"] is kept
    await clock.advance(240)
    assert ("dev/relay.relay", False) in devices.writes  # the pump-run delay carried on

    writes = len(devices.writes)
    await clock.advance(3600)  # the changed overload rule starts fresh: no crossing seen since
    assert len(devices.writes) == writes


async def test_reload_removes_a_rule_and_its_timers(start_engine, devices, clock):
    engine = await start_engine(RELAY_FOR_5_MIN)
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)
    await clock.settle()
    assert engine.store.entries
    engine.reload([])
    await clock.advance(600)
    assert devices.writes == [("dev/relay.relay", True)]
    assert engine.store.entries == {}
    assert engine.recent[-1]["outcome"] == "cancelled"
