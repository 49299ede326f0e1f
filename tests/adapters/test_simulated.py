from __future__ import annotations

from edged.adapters.simulated.adapter import SimulatedAdapter
from edged.adapters.simulated.config import SimulatedConfig
from edged.model import Command, CommandStatus, Origin
from tests.adapters import conformance

CONFIG = SimulatedConfig.model_validate(
    {
        "type": "simulated",
        "name": "sim",
        "interval": 0.01,
        "seed": 1,
        "devices": [
            {"id": "thermostat", "kind": "thermostat"},
            {"id": "relay", "kind": "relay"},
            {"id": "meter", "kind": "energy_meter"},
        ],
    }
)


def make(hub, tmp_path) -> SimulatedAdapter:
    return SimulatedAdapter(CONFIG, hub, tmp_path)


async def test_conformance(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    task = running(adapter)
    await conformance.check_devices_report(adapter, hub, watch)
    await conformance.check_read_only_rejected(hub, "sim/meter", "power")
    await conformance.check_write_round_trip(hub, watch, "sim/relay", "relay", True)
    await conformance.check_stop_marks_offline(adapter, hub, task)


async def test_values_move(hub, watch, running, tmp_path):
    running(make(hub, tmp_path))
    await watch.until(lambda: hub.value("sim/meter", "power"))
    first = hub.value("sim/meter", "power").value
    await watch.until(lambda: hub.value("sim/meter", "power").value != first)


async def test_relay_draws_power_only_when_on(hub, watch, running, tmp_path):
    running(make(hub, tmp_path))
    await watch.until(lambda: (d := hub.devices.get("sim/relay")) and d.online)
    assert hub.value("sim/relay", "power").value == 0.0
    result = await hub.execute(Command("sim/relay", "relay", "on", Origin.RULE))
    assert result.status is CommandStatus.OK
    assert result.command.value is True
    await watch.until(lambda: hub.value("sim/relay", "power").value > 30)


async def test_out_of_range_setpoint_fails_with_reason(hub, watch, running, tmp_path):
    running(make(hub, tmp_path))
    await watch.until(lambda: (d := hub.devices.get("sim/thermostat")) and d.online)
    result = await hub.execute(Command("sim/thermostat", "setpoint", 80, Origin.API))
    assert result.status is CommandStatus.FAILED
    assert "between 5 and 30" in result.reason
