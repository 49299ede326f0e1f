"""The Zigbee adapter against the simulated radio: zigpy's real stack runs
above ``send_packet``/``packet_received``, so joining, the interview, ZCL
requests and the device database are the code a real stick runs."""

from __future__ import annotations

import asyncio
import json

import pytest
from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Basic, LevelControl, OnOff
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import OccupancySensing, TemperatureMeasurement
from zigpy.zcl.clusters.security import IasZone

from edged.adapters.zigbee.adapter import BACKUP, SIMULATED_NVRAM, ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.errors import CommandError
from edged.model import Command, CommandStatus, Origin, Quality
from tests.adapters import conformance
from tests.gateway_log import gateway_log_fixture  # noqa: F401 - a fixture

KINDS = ["climate", "motion", "plug", "lamp"]


def make(hub, tmp_path, **overrides) -> ZigbeeAdapter:
    config = {
        "type": "zigbee",
        "name": "zb",
        "radio": "simulated",
        "simulated": {"devices": [{"kind": k} for k in KINDS], "report_interval": 0},
        **overrides,
    }
    return ZigbeeAdapter(ZigbeeConfig.model_validate(config), hub, tmp_path / "zb")


async def ready(adapter: ZigbeeAdapter) -> None:
    async with asyncio.timeout(10):
        await adapter.ready.wait()


def device_id(adapter: ZigbeeAdapter, kind: str) -> str:
    return adapter.device_id(str(adapter.app.node(kind).ieee))


def value(hub, device: str, key: str):
    reading = hub.value(device, key)
    return None if reading is None else reading.value


async def pair_all(adapter: ZigbeeAdapter, hub, watch) -> dict[str, str]:
    """Open the network, let every simulated device join, wait until each is configured."""
    await ready(adapter)
    await adapter.permit_join(30)
    ids = {kind: device_id(adapter, kind) for kind in KINDS}
    # the last point each device's configuration reads (IAS points appear once the zone type is known)
    last = {"climate": "pressure", "motion": "motion", "plug": "demand", "lamp": "color_temp"}

    def configured() -> bool:
        return all((r := hub.value(ids[k], key)) is not None and r.quality is Quality.GOOD for k, key in last.items())

    await watch.until(configured)
    return ids


async def test_conformance(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    task = running(adapter)
    ids = await pair_all(adapter, hub, watch)
    await conformance.check_devices_report(adapter, hub, watch)
    await conformance.check_read_only_rejected(hub, ids["climate"], "temperature")
    await conformance.check_write_round_trip(hub, watch, ids["lamp"], "on", True)
    await conformance.check_stop_marks_offline(adapter, hub, task)


async def test_join_produces_points_with_units_and_values(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)

    def points(kind: str) -> dict[str, tuple[str | None, object]]:
        device = hub.devices[ids[kind]]
        return {key: (p.unit, value(hub, device.id, key)) for key, p in device.points.items()}

    assert points("climate") == {
        "temperature": ("Cel", 21.5), "humidity": ("%RH", 45.2), "pressure": ("hPa", 1013.0), "battery": ("%EL", 90.0),
    }
    assert points("motion") == {
        "occupancy": (None, False), "illuminance": ("lx", 120.0), "motion": (None, False),
        "tamper": (None, False), "battery": ("%EL", 100.0),
    }
    # the plug scales by its own multiplier/divisor attributes: V /10, A /1000, kWh /1000
    assert points("plug") == {
        "on": (None, False), "toggle": (None, None), "power": ("W", 0.0), "voltage": ("V", 230.1),
        "current": ("A", 0.0), "energy": ("kWh", 123.456), "demand": ("W", 0.0),
    }
    assert hub.devices[ids["lamp"]].points["level"].unit == "%"
    assert hub.devices[ids["lamp"]].points["color_temp"].unit == "mired"
    plug = hub.devices[ids["plug"]]
    assert (plug.manufacturer, plug.model) == ("edged simulated", "smart plug")
    assert plug.points["on"].writable and not plug.points["power"].writable


async def test_join_configures_reporting_for_mapped_attributes(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair_all(adapter, hub, watch)
    climate = adapter.app.node("climate")
    temperature = TemperatureMeasurement.AttributeDefs.measured_value.id
    assert temperature in climate.reporting[TemperatureMeasurement.cluster_id]
    plug = adapter.app.node("plug")
    em = ElectricalMeasurement.AttributeDefs
    assert {em.active_power.id, em.rms_voltage.id, em.rms_current.id} <= plug.reporting[ElectricalMeasurement.cluster_id]
    # IAS zones are enrolled with the coordinator as their CIE
    motion = adapter.app.node("motion")
    assert motion.values[(IasZone.cluster_id, "cie_addr")] == adapter.app.state.node_info.ieee


async def test_reports_update_points_in_one_batch(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    batches: list[list] = []
    hub.subscribe(lambda batch: batches.append(list(batch)))

    plug = adapter.app.node("plug")
    plug.values[(ElectricalMeasurement.cluster_id, "rms_voltage")] = 2250
    plug.values[(ElectricalMeasurement.cluster_id, "active_power")] = 1234
    plug.report(ElectricalMeasurement.cluster_id, ["rms_voltage", "active_power"])
    await watch.until(lambda: value(hub, ids["plug"], "power") == 123.4)
    assert value(hub, ids["plug"], "voltage") == 225.0
    assert [r.key for r in batches[-1]] == ["voltage", "power"]  # one report, one batch

    adapter.app.node("climate").set(TemperatureMeasurement.cluster_id, "measured_value", -525)
    await watch.until(lambda: value(hub, ids["climate"], "temperature") == -5.25)

    motion = adapter.app.node("motion")
    motion.set(IasZone.cluster_id, "zone_status", IasZone.ZoneStatus.Alarm_1 | IasZone.ZoneStatus.Tamper)
    await watch.until(lambda: value(hub, ids["motion"], "motion") is True)
    assert value(hub, ids["motion"], "tamper") is True
    motion.set(OccupancySensing.cluster_id, "occupancy", 1)
    await watch.until(lambda: value(hub, ids["motion"], "occupancy") is True)


async def test_commands_reach_the_device(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    lamp = adapter.app.node("lamp")

    result = await hub.execute(Command(ids["lamp"], "level", 50, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    assert lamp.commands[-1] == (LevelControl.cluster_id, "move_to_level_with_on_off", {"level": 127, "transition_time": 0})
    await watch.until(lambda: value(hub, ids["lamp"], "level") == 50 and value(hub, ids["lamp"], "on") is True)

    result = await hub.execute(Command(ids["lamp"], "color_temp", 250, Origin.RULE))
    assert result.status is CommandStatus.OK, result.reason
    assert lamp.values[(Color.cluster_id, "color_temperature")] == 250
    await watch.until(lambda: value(hub, ids["lamp"], "color_temp") == 250)

    result = await hub.execute(Command(ids["lamp"], "toggle", True, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    assert lamp.commands[-1][:2] == (OnOff.cluster_id, "toggle")
    await watch.until(lambda: value(hub, ids["lamp"], "on") is False)

    # switching the plug on makes it draw power, which it reports
    result = await hub.execute(Command(ids["plug"], "on", "on", Origin.CLOUD))
    assert result.status is CommandStatus.OK, result.reason
    await watch.until(lambda: value(hub, ids["plug"], "power") == 60.0)
    result = await hub.execute(Command(ids["plug"], "on", False, Origin.CLOUD))
    assert result.status is CommandStatus.OK, result.reason
    await watch.until(lambda: value(hub, ids["plug"], "power") == 0.0)


async def test_bad_commands_fail_with_a_reason(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)

    result = await hub.execute(Command(ids["lamp"], "level", 150, Origin.API))
    assert result.status is CommandStatus.FAILED
    assert "0..100" in result.reason

    adapter.app.node("lamp").silent = True  # out of range: the radio gets no MAC ack
    result = await hub.execute(Command(ids["lamp"], "on", True, Origin.API))
    assert result.status is CommandStatus.FAILED
    assert "DeliveryError" in result.reason


async def test_leave_marks_device_offline(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    adapter.app.node("plug").leave()
    await watch.until(lambda: not hub.devices[ids["plug"]].online)
    assert hub.devices[ids["lamp"]].online
    result = await hub.execute(Command(ids["plug"], "on", True, Origin.API))
    assert result.status is CommandStatus.REJECTED



async def test_a_removed_device_is_forgotten_and_the_rest_stays(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    await adapter.remove(ids["plug"])
    await watch.until(lambda: ids["plug"] not in hub.devices)
    assert hub.devices[ids["lamp"]].online
    with pytest.raises(CommandError, match="is not a device of zb"):
        await adapter.remove(ids["plug"])  # gone
    with pytest.raises(CommandError, match="is not a device of zb"):
        await adapter.remove("zb/not-an-ieee")

async def test_device_rejoins_under_the_same_id(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    plug = adapter.app.node("plug")
    old_nwk = plug.nwk
    plug.leave()
    await watch.until(lambda: not hub.devices[ids["plug"]].online)
    await adapter.permit_join(30)  # the plug joins again, with a new network address
    await watch.until(lambda: hub.devices[ids["plug"]].online)
    assert plug.nwk != old_nwk
    assert len(hub.adapter_devices("zb")) == len(KINDS)
    result = await hub.execute(Command(ids["plug"], "on", True, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    await watch.until(lambda: value(hub, ids["plug"], "power") == 60.0)


async def test_silent_device_goes_offline_and_back(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path, silence={"mains": "300ms", "battery": "10m"})
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    plug = adapter.app.node("plug")
    plug.silent = True
    await watch.until(lambda: not hub.devices[ids["plug"]].online)
    assert hub.devices[ids["climate"]].online  # battery devices may stay silent longer
    plug.silent = False
    plug.set(OnOff.cluster_id, "on_off", 1)
    await watch.until(lambda: hub.devices[ids["plug"]].online and value(hub, ids["plug"], "on") is True)


async def test_restart_resumes_network_without_pairing(hub, watch, running, tmp_path):
    first = make(hub, tmp_path)
    task = running(first)
    ids = await pair_all(first, hub, watch)
    network = first.app.state.network_info
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not hub.devices[ids["climate"]].online

    backup = json.loads((tmp_path / "zb" / BACKUP).read_text())
    assert backup["pan_id"].lower() == f"{network.pan_id:04x}"
    assert (tmp_path / "zb" / BACKUP).stat().st_mode & 0o077 == 0, "the backup holds the network key: owner only"

    second = make(hub, tmp_path)  # no permit join: nothing can pair
    running(second)
    await ready(second)
    assert second.app.state.network_info.extended_pan_id == network.extended_pan_id
    assert second.app.state.network_info.network_key.key == network.network_key.key
    # known devices are back, online (seen recently), with their last values marked uncertain
    await watch.until(lambda: hub.devices[ids["climate"]].online)
    assert hub.value(ids["climate"], "temperature").quality is Quality.UNCERTAIN
    assert hub.devices[ids["motion"]].points.keys() >= {"motion", "illuminance"}
    # ...and their reports and commands work without a new join
    second.app.node("climate").set(TemperatureMeasurement.cluster_id, "measured_value", 1999)
    await watch.until(lambda: value(hub, ids["climate"], "temperature") == 19.99)
    assert hub.value(ids["climate"], "temperature").quality is Quality.GOOD
    result = await hub.execute(Command(ids["lamp"], "on", True, Origin.API))
    assert result.status is CommandStatus.OK, result.reason


async def test_new_radio_gets_the_network_from_the_backup(hub, watch, running, tmp_path):
    first = make(hub, tmp_path)
    task = running(first)
    await pair_all(first, hub, watch)
    network = first.app.state.network_info
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    (tmp_path / "zb" / SIMULATED_NVRAM).unlink()  # a blank stick in place of the old one
    second = make(hub, tmp_path)
    running(second)
    await ready(second)
    restored = second.app.state.network_info
    assert (restored.pan_id, restored.extended_pan_id, restored.network_key.key) == (
        network.pan_id, network.extended_pan_id, network.network_key.key,
    )
    assert restored.network_key.tx_counter > network.network_key.tx_counter  # zigpy bumps frame counters


async def test_permit_join_checks_duration(hub, running, tmp_path):
    adapter = make(hub, tmp_path)
    with pytest.raises(CommandError, match="not connected"):
        await adapter.permit_join(60)
    running(adapter)
    await ready(adapter)
    with pytest.raises(CommandError, match=r"0\.\.254"):
        await adapter.permit_join(300)
    assert await adapter.permit_join() == 60


async def test_a_silent_mains_device_is_pinged_and_goes_offline_after_failed_pings(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path, silence={"ping_after": "200ms", "failed_pings": 2})
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    lamp, plug = adapter.app.node("lamp"), adapter.app.node("plug")
    plug.silent = True  # unplugged: the radio gets no MAC ack
    await watch.until(lambda: not hub.devices[ids["plug"]].online, timeout=5)
    stats = adapter.stats()
    assert stats.pings_failed >= 2 and stats.offline_by_ping == 1
    # the lamp answers its pings (a Basic read of the power source) and stays online;
    # battery devices sleep, are never pinged, and keep their silence timeout
    assert (Basic.cluster_id, ["power_source"]) in lamp.reads
    assert hub.devices[ids["lamp"]].online and hub.devices[ids["climate"]].online
    assert (Basic.cluster_id, ["power_source"]) not in adapter.app.node("climate").reads
    assert stats.pings > stats.pings_failed

    plug.silent = False  # plugged back in: the next ping is answered
    await watch.until(lambda: hub.devices[ids["plug"]].online, timeout=5)
    assert (Basic.cluster_id, ["power_source"]) in plug.reads


async def test_a_mains_device_that_stops_answering_pings_says_so(hub, watch, running, tmp_path, gateway_log):
    adapter = make(hub, tmp_path, silence={"ping_after": "200ms", "failed_pings": 2})
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    adapter.app.node("plug").silent = True
    await watch.until(lambda: not hub.devices[ids["plug"]].online, timeout=5)
    problem = hub.devices[ids["plug"]].problem
    assert problem is not None and problem.reason == "no answer to 2 pings" and problem.count == 2
    adapter.app.node("plug").silent = False
    await watch.until(lambda: hub.devices[ids["plug"]].online, timeout=5)
    assert hub.devices[ids["plug"]].problem is None
    assert gateway_log.tracebacks() == [] and gateway_log.library_errors() == []


async def test_a_command_the_device_refuses_is_its_problem_with_the_zcl_status(hub, watch, running, tmp_path, gateway_log):
    adapter = make(hub, tmp_path)
    running(adapter)
    ids = await pair_all(adapter, hub, watch)
    adapter.app.node("lamp").refuse["on"] = foundation.Status.FAILURE
    result = await hub.execute(Command(ids["lamp"], "on", True, Origin.API))
    assert (result.status, result.reason) == (CommandStatus.FAILED, "device answered FAILURE")
    assert hub.devices[ids["lamp"]].problem.reason == "on: device answered FAILURE"
    del adapter.app.node("lamp").refuse["on"]
    result = await hub.execute(Command(ids["lamp"], "on", True, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    await watch.until(lambda: hub.devices[ids["lamp"]].problem is None)  # its report of the new state
    assert gateway_log.tracebacks() == [] and gateway_log.library_errors() == []
