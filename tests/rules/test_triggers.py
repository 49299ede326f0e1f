"""Each trigger fires when, and only when, its event happens."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from edged.model import Command, Origin

WRITE_LAMP = """
  actions:
    - {type: write, point: dev/lamp.on, value: true}
"""


def rule(trigger: str, extra: str = "") -> str:
    return f"""
- id: r
  triggers:
    - {trigger}{extra}{WRITE_LAMP}"""


async def test_change_fires_on_a_change_not_on_a_repeat(start_engine, devices, clock, watch):
    devices.publish("dev/motion.illuminance", 10.0)
    engine = await start_engine(rule("{type: change, point: dev/motion.illuminance}"))
    devices.publish("dev/motion.illuminance", 10.0)  # the same value: no change
    await clock.settle()
    assert devices.commands == []
    devices.publish("dev/motion.illuminance", 12.5)
    await watch.until(lambda: devices.commands)
    assert devices.writes == [("dev/lamp.on", True)]
    assert engine.recent[-1]["trigger"] == "change dev/motion.illuminance"


async def test_change_to_and_from_a_value(start_engine, devices, clock, watch):
    devices.publish("dev/motion.occupancy", False)
    await start_engine(rule("{type: change, point: dev/motion.occupancy, from: false, to: true}"))
    devices.publish("dev/motion.occupancy", True)
    await watch.until(lambda: devices.commands)
    devices.publish("dev/motion.occupancy", False)  # to false: not wanted
    await clock.settle()
    assert len(devices.commands) == 1


async def test_threshold_fires_on_the_crossing_only(start_engine, devices, clock, watch):
    devices.publish("dev/meter.power", 500.0)
    await start_engine(rule("{type: threshold, point: dev/meter.power, above: 1000}"))
    devices.publish("dev/meter.power", 1200.0)
    await watch.until(lambda: devices.commands)
    for value in (1300.0, 1100.0, 1500.0):  # stays above: no new firing
        devices.publish("dev/meter.power", value)
    await clock.settle()
    assert len(devices.commands) == 1


async def test_threshold_hysteresis_rearms_only_after_falling_far_enough(start_engine, devices, clock, watch):
    devices.publish("dev/meter.power", 500.0)
    await start_engine(rule("{type: threshold, point: dev/meter.power, above: 1000, hysteresis: 100}"))
    devices.publish("dev/meter.power", 1010.0)
    await watch.until(lambda: len(devices.commands) == 1)
    devices.publish("dev/meter.power", 950.0)  # inside the hysteresis band: still "above"
    devices.publish("dev/meter.power", 1010.0)
    await clock.settle()
    assert len(devices.commands) == 1
    devices.publish("dev/meter.power", 899.0)  # cleared
    devices.publish("dev/meter.power", 1010.0)
    await watch.until(lambda: len(devices.commands) == 2)


async def test_threshold_below(start_engine, devices, watch):
    devices.publish("dev/thermo.temperature", 20.0)
    await start_engine(rule("{type: threshold, point: dev/thermo.temperature, below: 18}"))
    devices.publish("dev/thermo.temperature", 17.5)
    await watch.until(lambda: devices.commands)


async def test_threshold_for_fires_after_staying_past(start_engine, devices, clock, watch):
    devices.publish("dev/meter.power", 500.0)
    await start_engine(rule("{type: threshold, point: dev/meter.power, above: 1000, for: 10s}"))
    devices.publish("dev/meter.power", 1200.0)
    await clock.advance(9.9)
    assert devices.commands == []
    await clock.advance(0.1)
    await watch.until(lambda: devices.commands)


async def test_threshold_for_is_cancelled_when_the_value_leaves(start_engine, devices, clock):
    devices.publish("dev/meter.power", 500.0)
    await start_engine(rule("{type: threshold, point: dev/meter.power, above: 1000, for: 10s}"))
    devices.publish("dev/meter.power", 1200.0)
    await clock.advance(5)
    devices.publish("dev/meter.power", 900.0)
    await clock.advance(60)
    assert devices.commands == []


async def test_bad_quality_reading_is_no_crossing(start_engine, devices, hub, clock):
    from edged.model import Quality, Reading

    devices.publish("dev/meter.power", 500.0)
    await start_engine(rule("{type: threshold, point: dev/meter.power, above: 1000}"))
    hub.publish([Reading("dev/meter", "power", 99999.0, clock.now(), Quality.BAD)])
    await clock.settle()
    assert devices.commands == []


async def test_device_offline_and_online(start_engine, devices, hub, watch):
    await start_engine(rule("{type: device, device: dev/meter, to: offline}"))
    hub.set_online("dev/meter", False)
    await watch.until(lambda: devices.commands)
    hub.set_online("dev/meter", True)
    await watch.until(lambda: devices.commands)
    assert len(devices.commands) == 1


async def test_schedule_every(start_engine, devices, clock, watch):
    await start_engine(rule("{type: schedule, every: 10m}"))
    await clock.advance(599)  # START is 400 s past a 10-minute boundary: one firing, 200 s in
    first = len(devices.commands)
    await clock.advance(600)
    assert len(devices.commands) == first + 1
    assert first == 1


async def test_schedule_cron_in_a_time_zone(start_engine, devices, clock):
    engine = await start_engine(rule("{type: schedule, cron: '30 7 * * *'}"), timezone="Europe/Berlin")
    await clock.advance(86400)
    assert len(devices.commands) == 1
    fired_at = dt.datetime.fromtimestamp(engine.recent[-1]["ts"], ZoneInfo("Europe/Berlin"))
    assert (fired_at.hour, fired_at.minute) == (7, 30)



LONDON = "latitude: 51.5074, longitude: -0.1278"


async def test_sun_fires_at_sunset_and_before_it(start_engine, devices, clock):
    # START is 2025-06-15 15:06:40 UTC; the almanac gives sunset in London at 21:19 BST (20:19 UTC) that day.
    engine = await start_engine(f"""
- id: at-sunset
  triggers: [{{type: sun, event: sunset, {LONDON}}}]
  actions: [{{type: write, point: dev/lamp.on, value: true}}]
- id: half-an-hour-before
  triggers: [{{type: sun, event: sunset, before: 30m, {LONDON}}}]
  actions: [{{type: write, point: dev/lamp.level, value: 40}}]
""")
    await clock.advance(dt.datetime(2025, 6, 15, 19, 46, tzinfo=dt.UTC).timestamp() - clock.now())
    assert devices.writes == []
    await clock.advance(6 * 60)  # 19:52 UTC
    assert devices.writes == [("dev/lamp.level", 40)]
    await clock.advance(30 * 60)  # 20:22 UTC
    assert devices.writes == [("dev/lamp.level", 40), ("dev/lamp.on", True)]
    at, before = (next(e["ts"] for e in engine.recent if e["rule_id"] == r) for r in ("at-sunset", "half-an-hour-before"))
    assert at - before == 1800
    assert dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M") in ("20:18", "20:19", "20:20")

async def test_command_result_trigger(start_engine, devices, hub, watch):
    await start_engine(rule("{type: command_result, point: dev/thermo.setpoint, status: [rejected]}"))
    await hub.execute(Command("dev/thermo", "setpoint", "warm", Origin.API))  # not a number: rejected
    await watch.until(lambda: devices.commands)
    assert devices.writes == [("dev/lamp.on", True)]


async def test_command_result_of_other_status_does_not_fire(start_engine, devices, hub, clock):
    await start_engine(rule("{type: command_result, point: dev/thermo.setpoint, status: [rejected]}"))
    await hub.execute(Command("dev/thermo", "setpoint", 21.0, Origin.API))
    await clock.settle()
    assert devices.writes == [("dev/thermo.setpoint", 21.0)]


async def test_rule_event_trigger(start_engine, devices, watch):
    await start_engine("""
- id: announcer
  triggers: [{type: change, point: dev/motion.occupancy}]
  actions: [{type: event, name: motion, data: {room: hall}}]
- id: listener
  triggers: [{type: event, name: motion, rule: announcer}]
  actions: [{type: write, point: dev/lamp.on, value: true}]
""")
    devices.publish("dev/motion.occupancy", False)
    devices.publish("dev/motion.occupancy", True)
    await watch.until(lambda: devices.commands)
    assert devices.writes == [("dev/lamp.on", True)]
