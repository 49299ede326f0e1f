"""Pending timers survive a restart of the engine (a new instance on the
same state directory), and a reload keeps the state of unchanged rules."""

from __future__ import annotations

import asyncio
import json

from edged.rules.engine import RulesEngine
from tests.rules.conftest import parse_rules


class Gateway:
    """The rules engine of a gateway that is stopped and started again on one state directory."""

    def __init__(self, text, hub, clock, state):
        self.text, self.hub, self.clock, self.state = text, hub, clock, state
        self.engine: RulesEngine | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> RulesEngine:
        self.engine = RulesEngine(parse_rules(self.text), self.hub, self.state, "UTC", self.clock)
        self.task = asyncio.create_task(self.engine.run())
        await self.engine.started.wait()
        return self.engine

    async def stop(self) -> dict:
        """Stop the engine as a shutdown would; return the timers it saved."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return json.loads((self.state / "timers.json").read_text())["timers"]


def motion_detected(devices) -> None:
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)


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


async def test_a_delay_survives_a_restart(hub, devices, clock, tmp_path):
    gateway = Gateway(RELAY_FOR_5_MIN, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.advance(60)
    assert devices.writes == [("dev/relay.relay", True)]
    saved = await gateway.stop()  # the gateway goes down with the relay on
    assert [e["kind"] for e in saved.values()] == ["delay"]

    await clock.advance(600)  # down for 10 minutes: the delay ended meanwhile
    assert devices.writes == [("dev/relay.relay", True)]
    await gateway.start()
    await clock.settle()
    # The relay goes off, and the run finishes the rest of the rule (outside the if).
    assert devices.writes == [("dev/relay.relay", True), ("dev/relay.relay", False), ("dev/lamp.on", False)]
    assert await gateway.stop() == {}


async def test_a_delay_resumes_at_its_due_time(hub, devices, clock, tmp_path):
    gateway = Gateway(RELAY_FOR_5_MIN, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.advance(60)
    await gateway.stop()
    await gateway.start()
    await clock.advance(239)
    assert devices.writes == [("dev/relay.relay", True)]
    await clock.advance(1)
    assert devices.writes[1] == ("dev/relay.relay", False)


async def test_a_changed_rule_drops_its_saved_delay(hub, devices, clock, tmp_path):
    gateway = Gateway(RELAY_FOR_5_MIN, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.settle()
    await gateway.stop()
    gateway.text = RELAY_FOR_5_MIN.replace("5m", "6m")
    await gateway.start()
    await clock.advance(3600)
    assert devices.writes == [("dev/relay.relay", True)]
    assert await gateway.stop() == {}


FOR_RULE = """
- id: overload
  triggers: [{type: threshold, point: dev/meter.power, above: 1000, for: 10m}]
  actions: [{type: write, point: dev/relay.relay, value: false}]
"""


async def test_a_for_timer_survives_a_restart(hub, devices, clock, tmp_path):
    gateway = Gateway(FOR_RULE, hub, clock, tmp_path / "rules")
    devices.publish("dev/meter.power", 100.0)
    await gateway.start()
    devices.publish("dev/meter.power", 2000.0)
    await clock.advance(300)
    assert [e["kind"] for e in (await gateway.stop()).values()] == ["for"]
    hub.values.clear()  # after a real restart the Hub knows nothing yet
    await gateway.start()
    await clock.advance(299)
    assert devices.writes == []
    await clock.advance(1)
    assert devices.writes == [("dev/relay.relay", False)]
    assert await gateway.stop() == {}


async def test_reload_keeps_unchanged_rules_running_and_restarts_changed_ones(start_engine, devices, clock):
    engine = await start_engine(RELAY_FOR_5_MIN + FOR_RULE)
    devices.publish("dev/meter.power", 100.0)
    motion_detected(devices)
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
    motion_detected(devices)
    await clock.settle()
    assert engine.store.entries
    engine.reload([])
    await clock.advance(600)
    assert devices.writes == [("dev/relay.relay", True)]
    assert engine.store.entries == {}
    assert engine.recent[-1]["outcome"] == "cancelled"


LIGHT_UNTIL_QUIET = """
- id: stair-light
  triggers: [{type: change, point: dev/motion.occupancy, to: true}]
  actions:
    - {type: write, point: dev/lamp.on, value: true}
    - type: wait
      trigger: {type: change, point: dev/motion.occupancy, to: false}
      timeout: 5m
    - {type: write, point: dev/lamp.on, value: false}
"""


async def test_a_wait_survives_a_restart_and_ends_when_its_trigger_fires(hub, devices, clock, tmp_path):
    gateway = Gateway(LIGHT_UNTIL_QUIET, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.advance(60)
    assert [e["kind"] for e in (await gateway.stop()).values()] == ["wait"]

    await gateway.start()
    await clock.advance(10)
    assert devices.writes == [("dev/lamp.on", True)]
    devices.publish("dev/motion.occupancy", False)
    await clock.settle()
    assert devices.writes == [("dev/lamp.on", True), ("dev/lamp.on", False)]
    assert await gateway.stop() == {}


async def test_a_resumed_wait_times_out_at_its_saved_deadline(hub, devices, clock, tmp_path):
    gateway = Gateway(LIGHT_UNTIL_QUIET, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.advance(60)
    await gateway.stop()
    await clock.advance(120)  # down for 2 minutes: 2 of the 5 are left

    await gateway.start()
    await clock.advance(119)
    assert devices.writes == [("dev/lamp.on", True)]
    await clock.advance(1)
    assert devices.writes == [("dev/lamp.on", True), ("dev/lamp.on", False)]


DEBOUNCED = """
- id: settle
  debounce: 30s
  triggers: [{type: change, point: dev/thermo.temperature}]
  actions: [{type: write, point: dev/thermo.setpoint, expression: "trigger + 1"}]
"""


async def test_a_pending_debounce_survives_a_restart(hub, devices, clock, tmp_path):
    gateway = Gateway(DEBOUNCED, hub, clock, tmp_path / "rules")
    devices.publish("dev/thermo.temperature", 20.0)
    await gateway.start()
    devices.publish("dev/thermo.temperature", 21.0)
    await clock.advance(10)
    assert [e["kind"] for e in (await gateway.stop()).values()] == ["debounce"]

    await gateway.start()
    await clock.advance(19)
    assert devices.writes == []
    await clock.advance(1)
    assert devices.writes == [("dev/thermo.setpoint", 22.0)]  # the saved firing's value
    assert await gateway.stop() == {}


QUEUED = """
- id: batch
  mode: queued
  max: 5
  triggers: [{type: change, point: dev/meter.power}]
  actions:
    - {type: write, point: dev/lamp.level, expression: "int(trigger)"}
    - {type: delay, for: 10s}
    - {type: write, point: dev/lamp.on, value: false}
"""


async def test_queued_firings_survive_a_restart_in_order(hub, devices, clock, tmp_path):
    gateway = Gateway(QUEUED, hub, clock, tmp_path / "rules")
    devices.publish("dev/meter.power", 0.0)
    await gateway.start()
    for value in (1.0, 2.0, 3.0):  # 1 runs (in its delay), 2 and 3 wait in the queue
        devices.publish("dev/meter.power", value)
    await clock.advance(5)
    saved = await gateway.stop()
    assert sorted(e["kind"] for e in saved.values()) == ["delay", "queue"]

    await gateway.start()
    for _ in range(3):
        await clock.advance(10)
    assert devices.writes == [
        ("dev/lamp.level", 1), ("dev/lamp.on", False),
        ("dev/lamp.level", 2), ("dev/lamp.on", False),
        ("dev/lamp.level", 3), ("dev/lamp.on", False),
    ]  # fmt: skip
    assert await gateway.stop() == {}


IN_PARALLEL = """
- id: shutdown-sequence
  triggers: [{type: change, point: dev/motion.occupancy, to: true}]
  actions:
    - type: parallel
      actions:
        - type: sequence
          actions:
            - {type: delay, for: 1m}
            - {type: write, point: dev/lamp.on, value: false}
        - type: sequence
          actions:
            - {type: delay, for: 5m}
            - {type: write, point: dev/relay.relay, value: false}
    - {type: write, point: dev/thermo.setpoint, value: 18.0}
"""


async def test_the_unfinished_branches_of_a_parallel_block_survive_a_restart(hub, devices, clock, tmp_path):
    gateway = Gateway(IN_PARALLEL, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.advance(120)
    assert devices.writes == [("dev/lamp.on", False)]  # the first branch is done; the second is in its delay
    saved = await gateway.stop()
    assert sorted(e["kind"] for e in saved.values()) == ["delay", "parallel"]

    await gateway.start()
    await clock.advance(179)
    assert devices.writes == [("dev/lamp.on", False)]
    await clock.advance(1)
    # Only the unfinished branch goes on; then the run goes on after the block.
    assert devices.writes == [("dev/lamp.on", False), ("dev/relay.relay", False), ("dev/thermo.setpoint", 18.0)]
    assert await gateway.stop() == {}


async def test_saved_branches_go_with_their_changed_rule(hub, devices, clock, tmp_path):
    gateway = Gateway(IN_PARALLEL, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.advance(10)
    assert len(await gateway.stop()) == 3  # the block and both branches

    gateway.text = IN_PARALLEL.replace("18.0", "17.0")
    await gateway.start()
    await clock.advance(3600)
    assert devices.writes == []
    assert await gateway.stop() == {}


NESTED = """
- id: nested
  triggers: [{type: change, point: dev/motion.occupancy, to: true}]
  actions:
    - type: parallel
      actions:
        - type: parallel
          actions:
            - {type: delay, for: 2m}
            - type: sequence
              actions:
                - {type: delay, for: 4m}
                - {type: write, point: dev/lamp.level, value: 10}
        - {type: write, point: dev/lamp.on, value: true}
    - {type: write, point: dev/relay.relay, value: false}
"""


async def test_a_parallel_block_inside_a_branch_resumes_too(hub, devices, clock, tmp_path):
    gateway = Gateway(NESTED, hub, clock, tmp_path / "rules")
    await gateway.start()
    motion_detected(devices)
    await clock.advance(60)
    saved = await gateway.stop()
    assert sorted(e["kind"] for e in saved.values()) == ["delay", "delay", "parallel", "parallel"]

    await gateway.start()
    await clock.advance(120)
    assert devices.writes == [("dev/lamp.on", True)]
    await clock.advance(60)
    assert devices.writes == [("dev/lamp.on", True), ("dev/lamp.level", 10), ("dev/relay.relay", False)]
    assert await gateway.stop() == {}


MORNING = """
- id: morning-heat
  triggers: [{type: schedule, cron: "0 6 * * *", catch_up: 10m}]
  actions: [{type: write, point: dev/thermo.setpoint, value: 21.0}]
"""
SIX = 1_750_053_600.0  # 2025-06-16 06:00:00 UTC, the day after START


async def test_a_schedule_missed_while_down_is_caught_up_once(hub, devices, clock, tmp_path):
    gateway = Gateway(MORNING, hub, clock, tmp_path / "rules")
    await gateway.start()
    await clock.advance(SIX - 120 - clock.now())
    await gateway.stop()  # a power cut at 05:58
    await clock.advance(300)  # back at 06:03
    await gateway.start()
    await clock.settle()
    assert devices.writes == [("dev/thermo.setpoint", 21.0)]
    await clock.advance(3600)
    assert devices.writes == [("dev/thermo.setpoint", 21.0)]  # once


async def test_a_schedule_missed_longer_ago_than_catch_up_is_not_run(hub, devices, clock, tmp_path):
    gateway = Gateway(MORNING, hub, clock, tmp_path / "rules")
    await gateway.start()
    await clock.advance(SIX - 120 - clock.now())
    await gateway.stop()
    await clock.advance(1920)  # back at 06:30: too late for a 06:00 heating start
    await gateway.start()
    await clock.settle()
    assert devices.writes == []


async def test_a_schedule_that_fired_is_not_run_again_after_a_restart(hub, devices, clock, tmp_path):
    gateway = Gateway(MORNING, hub, clock, tmp_path / "rules")
    await gateway.start()
    await clock.advance(SIX + 60 - clock.now())
    assert devices.writes == [("dev/thermo.setpoint", 21.0)]
    await gateway.stop()
    await clock.advance(240)  # restarted at 06:05
    await gateway.start()
    await clock.settle()
    assert devices.writes == [("dev/thermo.setpoint", 21.0)]


async def test_a_changed_schedule_does_not_catch_up_on_reload(start_engine, devices, clock):
    engine = await start_engine(MORNING)
    await clock.advance(SIX + 65 * 60 - clock.now())  # 07:05; it fired at 06:00
    assert devices.writes == [("dev/thermo.setpoint", 21.0)]
    engine.reload(parse_rules(MORNING.replace('"0 6 * * *"', '"0 7 * * *"')))  # 07:00 has passed, but nothing was down
    await clock.settle()
    assert devices.writes == [("dev/thermo.setpoint", 21.0)]
