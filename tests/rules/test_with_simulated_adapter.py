"""End to end with a real adapter: a reading from the simulated energy meter
fires a rule whose command the simulated relay carries out."""

from __future__ import annotations

from edged.adapters.simulated.adapter import SimulatedAdapter
from edged.adapters.simulated.config import SimulatedConfig
from edged.model import Reading


async def test_a_rule_switches_the_simulated_relay(hub, watch, running, start_engine, clock, tmp_path):
    config = SimulatedConfig.model_validate({
        "type": "simulated", "name": "sim", "interval": "50ms", "seed": 1,
        "devices": [{"id": "relay", "kind": "relay"}, {"id": "meter", "kind": "energy_meter"}],
    })  # fmt: skip
    running(SimulatedAdapter(config, hub, tmp_path / "sim"))
    await watch.until(lambda: hub.value("sim/meter", "power") and hub.devices["sim/relay"].online)
    engine = await start_engine("""
- id: relay-on-high-load
  triggers: [{type: threshold, point: sim/meter.power, above: 20000}]
  actions: [{type: write, point: sim/relay.relay, value: true}]
""")
    hub.publish([Reading("sim/meter", "power", 25000.0, clock.now())])  # a spike the meter reports
    await watch.until(lambda: hub.value("sim/relay", "power").value > 0)  # the relay's load now draws power
    assert hub.value("sim/relay", "relay").value is True
    assert engine.errors_total == 0
    assert engine.recent[-1]["outcome"] == "done"
