"""Modes (single, restart, queued, parallel with max), debounce, throttle
and the loop guard."""

from __future__ import annotations

from edged.metrics import Metrics
from edged.rules.engine import FEEDBACK_LIMIT, FEEDBACK_PAUSE
from edged.view import GatewayView


def rule(mode: str, extra: str = "") -> str:
    return f"""
- id: r
  mode: {mode}{extra}
  triggers: [{{type: change, point: dev/meter.power}}]
  actions:
    - {{type: write, point: dev/lamp.level, expression: "int(trigger)"}}
    - {{type: delay, for: 10s}}
    - {{type: write, point: dev/lamp.on, value: false}}
"""


def burst(devices, *values: float) -> None:
    for value in values:
        devices.publish("dev/meter.power", value)


async def test_single_ignores_firings_while_running(start_engine, devices, clock):
    devices.publish("dev/meter.power", 0.0)
    engine = await start_engine(rule("single"))
    burst(devices, 1.0, 2.0)
    await clock.advance(10)
    assert devices.writes == [("dev/lamp.level", 1), ("dev/lamp.on", False)]
    assert [e["outcome"] for e in engine.recent] == ["done", "skipped: already running"]


async def test_restart_cancels_the_running_run(start_engine, devices, clock):
    devices.publish("dev/meter.power", 0.0)
    await start_engine(rule("restart"))
    burst(devices, 1.0)
    await clock.advance(8)
    burst(devices, 2.0)
    await clock.advance(8)
    assert devices.writes == [("dev/lamp.level", 1), ("dev/lamp.level", 2)]  # the first delay never ended
    await clock.advance(2)
    assert devices.writes[-1] == ("dev/lamp.on", False)
    assert len(devices.writes) == 3


async def test_queued_runs_one_after_another_up_to_max(start_engine, devices, clock):
    devices.publish("dev/meter.power", 0.0)
    engine = await start_engine(rule("queued", "\n  max: 1"))
    burst(devices, 1.0, 2.0, 3.0)  # 1 runs, 2 waits, 3 is dropped (queue of 1)
    await clock.advance(10)
    await clock.advance(10)
    assert devices.writes == [("dev/lamp.level", 1), ("dev/lamp.on", False), ("dev/lamp.level", 2), ("dev/lamp.on", False)]
    assert "dropped: queue full" in [e["outcome"] for e in engine.recent]


async def test_parallel_runs_at_once_up_to_max(start_engine, devices, clock):
    devices.publish("dev/meter.power", 0.0)
    await start_engine(rule("parallel", "\n  max: 2"))
    burst(devices, 1.0, 2.0, 3.0)
    await clock.settle()
    assert devices.writes == [("dev/lamp.level", 1), ("dev/lamp.level", 2)]
    await clock.advance(10)
    assert devices.writes[2:] == [("dev/lamp.on", False), ("dev/lamp.on", False)]


async def test_debounce_runs_once_after_the_triggers_go_quiet(start_engine, devices, clock):
    devices.publish("dev/meter.power", 0.0)
    await start_engine(rule("single", "\n  debounce: 2s"))
    for value in (1.0, 2.0, 3.0):
        burst(devices, value)
        await clock.advance(1)
    assert devices.writes == []
    await clock.advance(1)
    assert devices.writes == [("dev/lamp.level", 3)]  # the last firing's value


async def test_throttle_starts_at_most_one_run_per_period(start_engine, devices, clock):
    devices.publish("dev/meter.power", 0.0)
    engine = await start_engine(rule("parallel", "\n  throttle: 30s"))
    burst(devices, 1.0)
    await clock.advance(10)
    burst(devices, 2.0)  # 10 s after the last start: throttled
    await clock.advance(20)
    burst(devices, 3.0)  # 30 s after: runs
    await clock.settle()
    assert [v for p, v in devices.writes if p == "dev/lamp.level"] == [1, 3]
    assert "throttled" in [e["outcome"] for e in engine.recent]


TOGGLE = """
- id: toggle
  triggers: [{type: change, point: dev/relay.relay}]
  actions: [{type: write, point: dev/relay.relay, expression: "not trigger"}]
"""


async def test_loop_guard_a_rules_own_write_does_not_retrigger_it(start_engine, devices, clock, watch):
    devices.publish("dev/relay.relay", False)
    engine = await start_engine(TOGGLE)
    devices.publish("dev/relay.relay", True)  # someone switched it on by hand
    await watch.until(lambda: devices.commands)
    await clock.advance(1)
    # Without the guard the echoed False would trigger a write of True, and so on forever.
    assert devices.writes == [("dev/relay.relay", False)]
    assert engine.loops_prevented == 1
    assert engine.firings_total == 1


async def test_loop_guard_lets_a_real_change_through(start_engine, devices, clock, watch):
    devices.publish("dev/relay.relay", False)
    await start_engine(TOGGLE)
    devices.publish("dev/relay.relay", True)
    await watch.until(lambda: len(devices.commands) == 1)
    await clock.advance(10)  # past the guard window
    devices.publish("dev/relay.relay", True)  # a person switches it again
    await watch.until(lambda: len(devices.commands) == 2)


async def test_metrics(start_engine, devices, clock, watch):
    devices.publish("dev/meter.power", 0.0)
    engine = await start_engine(rule("single"))
    burst(devices, 5.0)
    await clock.advance(10)
    assert engine.firings_total == 1
    assert engine.errors_total == 0
    assert dict(engine.recent[-1]) == {"ts": clock.now() - 10, "rule_id": "r", "trigger": "change dev/meter.power", "outcome": "done"}
    assert len(engine.latencies) == 1  # only the write that followed the reading at once
    assert 0 <= engine.latencies[0] < 1


PING_PONG = """
- id: a
  triggers: [{type: change, point: dev/relay.relay}]
  actions: [{type: write, point: dev/lamp.on, expression: "trigger"}]
- id: b
  triggers: [{type: change, point: dev/lamp.on}]
  actions: [{type: write, point: dev/relay.relay, expression: "not trigger"}]
"""


async def test_rules_that_trigger_each_other_are_paused_not_spun(start_engine, devices, clock, caplog):
    devices.publish("dev/relay.relay", False)
    devices.publish("dev/lamp.on", False)
    engine = await start_engine(PING_PONG)
    devices.publish("dev/relay.relay", True)  # a switches the lamp, b the relay back, a the lamp ... forever
    await clock.settle()
    spun = len(devices.commands)
    await clock.settle()
    assert len(devices.commands) == spun <= 2 * (FEEDBACK_LIMIT + 2)  # it stopped, within one second
    assert engine.rules_paused == 1
    assert engine.errors_total == 1
    assert "edged_rules_paused_total 1.0" in Metrics(GatewayView("gw", engine.hub, rules=engine)).render().decode()
    paused = [r for r in caplog.records if "paused for 60 s" in r.getMessage()]
    assert [r.rule for r in paused] == [engine.recent[-1]["rule_id"]]
    assert engine.recent[-1]["outcome"] == "paused: triggered by rules too often"

    await clock.advance(FEEDBACK_PAUSE)  # the pause ends; the rule answers a person again
    devices.echo = False
    before = len(devices.commands)
    devices.publish("dev/relay.relay", not devices.hub.value("dev/relay", "relay").value)
    devices.publish("dev/lamp.on", not devices.hub.value("dev/lamp", "on").value)
    await clock.settle()
    assert len(devices.commands) == before + 2
