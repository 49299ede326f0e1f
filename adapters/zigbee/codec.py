"""Which ZCL attributes become which edged points, and how raw values convert.

A ``PointMap`` names one attribute of one server cluster, the point it feeds
(key, type, unit), the conversion from the raw ZCL value, and the reporting
change worth a report. ``point_maps(cluster)`` lists the maps that apply to a
cluster as the device has it (the IAS zone type decides the point name).
``COMMANDS`` turns a write to a point into the cluster command that does it.

Conversions follow the ZCL specification: temperatures and humidity in
hundredths, pressure in tenths of kPa (= hPa), illuminance as
``10000 * log10(lx) + 1``, battery in half percent, and electrical and
metering values scaled by the multiplier and divisor attributes the device
itself reports (read on join and kept in zigpy's attribute cache).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zigpy.zcl import Cluster, foundation
from zigpy.zcl.clusters.general import LevelControl, OnOff, PowerConfiguration
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.lighting import Color
from zigpy.zcl.clusters.measurement import (
    IlluminanceMeasurement,
    OccupancySensing,
    PressureMeasurement,
    RelativeHumidity,
    TemperatureMeasurement,
)
from zigpy.zcl.clusters.security import IasZone
from zigpy.zcl.clusters.smartenergy import Metering

from edged.errors import CommandError
from edged.model import Value, ValueType

Convert = Callable[[Any, Cluster], Value]
FLOAT, INT, BOOL = ValueType.FLOAT, ValueType.INT, ValueType.BOOL


@dataclass(frozen=True, slots=True)
class PointMap:
    cluster_id: int
    attribute: str  # zigpy's attribute name
    key: str
    type: ValueType
    unit: str | None
    convert: Convert
    writable: bool = False
    change: int = 1  # reportable change, in raw units


def scaled(divisor: float, digits: int = 2) -> Convert:
    return lambda raw, _cluster: round(int(raw) / divisor, digits)


def illuminance(raw: Any, _cluster: Cluster) -> float:
    """ZCL MeasuredValue = 10000 * log10(lx) + 1; 0 means too dark to measure."""
    raw = int(raw)
    return 0.0 if raw <= 0 else round(10 ** ((raw - 1) / 10000), 1)


def level_percent(raw: Any, _cluster: Cluster) -> int:
    return round(int(raw) * 100 / 254)


def factor(cluster: Cluster, multiplier: str, divisor: str) -> float:
    """The device's scale: ``multiplier / divisor`` from the attribute cache (0 or unknown -> 1)."""
    return (cluster.get(multiplier) or 1) / (cluster.get(divisor) or 1)


def electrical(multiplier: str, divisor: str, digits: int = 3) -> Convert:
    return lambda raw, cluster: round(int(raw) * factor(cluster, multiplier, divisor), digits)


def metered(scale: float = 1.0, digits: int = 3) -> Convert:
    """Metering values are ``raw * multiplier / divisor`` in kWh (summation) or kW (demand)."""
    return lambda raw, cluster: round(int(raw) * factor(cluster, "multiplier", "divisor") * scale, digits)


def flag(bit: int, invert: bool = False) -> Convert:
    return lambda raw, _cluster: bool(int(raw) & bit) != invert


# IAS zone type -> the point its alarm1 bit feeds; the contact switch reports
# "closed" as True (alarm1 set means the contact is open).
IAS_ZONE_POINTS: dict[int, tuple[str, bool]] = {
    IasZone.ZoneType.Motion_Sensor: ("motion", False),
    IasZone.ZoneType.Contact_Switch: ("contact", True),
    IasZone.ZoneType.Door_Window_Handle: ("contact", True),
    IasZone.ZoneType.Water_Sensor: ("water_leak", False),
    IasZone.ZoneType.Fire_Sensor: ("smoke", False),
    IasZone.ZoneType.Carbon_Monoxide_Sensor: ("carbon_monoxide", False),
    IasZone.ZoneType.Vibration_Movement_Sensor: ("vibration", False),
}

EM = ElectricalMeasurement.cluster_id
MAPS: dict[int, list[PointMap]] = {
    OnOff.cluster_id: [PointMap(OnOff.cluster_id, "on_off", "on", BOOL, None, lambda raw, _c: bool(raw), True, 0)],
    LevelControl.cluster_id: [PointMap(LevelControl.cluster_id, "current_level", "level", INT, "%", level_percent, True)],
    Color.cluster_id: [
        PointMap(Color.cluster_id, "color_temperature", "color_temp", INT, "mired", lambda raw, _c: int(raw), True)
    ],
    TemperatureMeasurement.cluster_id: [
        PointMap(TemperatureMeasurement.cluster_id, "measured_value", "temperature", FLOAT, "Cel", scaled(100), change=10)
    ],
    RelativeHumidity.cluster_id: [
        PointMap(RelativeHumidity.cluster_id, "measured_value", "humidity", FLOAT, "%RH", scaled(100), change=50)
    ],
    PressureMeasurement.cluster_id: [
        PointMap(PressureMeasurement.cluster_id, "measured_value", "pressure", FLOAT, "hPa", scaled(1, 1))
    ],
    IlluminanceMeasurement.cluster_id: [
        PointMap(IlluminanceMeasurement.cluster_id, "measured_value", "illuminance", FLOAT, "lx", illuminance, change=500)
    ],
    OccupancySensing.cluster_id: [
        PointMap(OccupancySensing.cluster_id, "occupancy", "occupancy", BOOL, None, flag(0x01), change=0)
    ],
    PowerConfiguration.cluster_id: [
        PointMap(PowerConfiguration.cluster_id, "battery_percentage_remaining", "battery", FLOAT, "%EL", scaled(2, 1), change=2)
    ],
    EM: [
        PointMap(EM, "active_power", "power", FLOAT, "W", electrical("ac_power_multiplier", "ac_power_divisor")),
        PointMap(EM, "rms_voltage", "voltage", FLOAT, "V", electrical("ac_voltage_multiplier", "ac_voltage_divisor")),
        PointMap(EM, "rms_current", "current", FLOAT, "A", electrical("ac_current_multiplier", "ac_current_divisor")),
    ],
    Metering.cluster_id: [
        PointMap(Metering.cluster_id, "current_summ_delivered", "energy", FLOAT, "kWh", metered()),
        PointMap(Metering.cluster_id, "instantaneous_demand", "demand", FLOAT, "W", metered(1000.0, 1)),
    ],
}

# Attributes read on join that scale or name the mapped ones.
SCALE_ATTRIBUTES: dict[int, list[str]] = {
    EM: [
        "ac_power_multiplier", "ac_power_divisor", "ac_voltage_multiplier",
        "ac_voltage_divisor", "ac_current_multiplier", "ac_current_divisor",
    ],
    Metering.cluster_id: ["multiplier", "divisor"],
    IasZone.cluster_id: ["zone_type"],
}


def ias_zone_maps(cluster: Cluster) -> list[PointMap]:
    key, closed_is_true = IAS_ZONE_POINTS.get(cluster.get("zone_type"), ("alarm", False))
    return [
        PointMap(IasZone.cluster_id, "zone_status", key, BOOL, None, flag(IasZone.ZoneStatus.Alarm_1, closed_is_true), change=0),
        PointMap(IasZone.cluster_id, "zone_status", "tamper", BOOL, None, flag(IasZone.ZoneStatus.Tamper), change=0),
    ]


def point_maps(cluster: Cluster) -> list[PointMap]:
    """The maps that apply to ``cluster`` (a server cluster of a joined device)."""
    if cluster.cluster_id == IasZone.cluster_id:
        return ias_zone_maps(cluster)
    return MAPS.get(cluster.cluster_id, [])


# -- commands --------------------------------------------------------------

CommandCall = Callable[[Cluster, Value], Awaitable[Any]]


async def _on_off(cluster: Cluster, value: Value) -> Any:
    return await (cluster.on() if value else cluster.off())


async def _toggle(cluster: Cluster, value: Value) -> Any:
    if not value:
        raise CommandError("write true to toggle")
    return await cluster.toggle()


async def _level(cluster: Cluster, value: Value) -> Any:
    if not isinstance(value, int) or not 0 <= value <= 100:
        raise CommandError(f"level must be 0..100 %, got {value!r}")
    return await cluster.move_to_level_with_on_off(level=round(value * 254 / 100), transition_time=0)


async def _color_temp(cluster: Cluster, value: Value) -> Any:
    if not isinstance(value, int) or not 1 <= value <= 0xFEFF:
        raise CommandError(f"color_temp must be 1..65279 mired, got {value!r}")
    return await cluster.move_to_color_temp(color_temp_mireds=value, transition_time=0)


# point key -> (cluster it is sent to, how)
COMMANDS: dict[str, tuple[int, CommandCall]] = {
    "on": (OnOff.cluster_id, _on_off),
    "toggle": (OnOff.cluster_id, _toggle),
    "level": (LevelControl.cluster_id, _level),
    "color_temp": (Color.cluster_id, _color_temp),
}

# Write-only points a cluster adds beside its mapped attributes.
EXTRA_POINTS: dict[int, list[tuple[str, ValueType]]] = {OnOff.cluster_id: [("toggle", BOOL)]}


def check_response(response: Any) -> None:
    """Raise ``CommandError`` if a cluster command's Default Response is not SUCCESS."""
    status = getattr(response, "status", None)
    if status is not None and status != foundation.Status.SUCCESS:
        raise CommandError(f"device answered {foundation.Status(status).name}")
