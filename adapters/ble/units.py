"""The one table from what a parser reports (device class, native unit,
value) to an edged point: its key, SenML/UCUM unit, value type and the factor
that brings the value into that unit.

Point keys are the parser's keys (``temperature``, ``humidity``,
``pressure``, ``battery``, ``temperature_probe_2``...), except that the
signal strength every parser adds is ``rssi``. Units are SenML symbols
(RFC 8428 and the secondary units of RFC 8798): ``Cel``, ``%RH`` for
humidity, ``%EL`` for battery level, ``Pa`` for every pressure (so sensors
of every family agree), ``ug/m3``... A unit the table does not know is kept
as the parser wrote it.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

from edged.model import Value, ValueType


class Conversion(NamedTuple):
    unit: str | None  # SenML/UCUM symbol
    factor: float = 1.0  # edged value = parser value * factor


# native unit (as sensor-state-data writes it) -> SenML unit and factor
UNITS: dict[str | None, Conversion] = {
    None: Conversion(None),
    "°C": Conversion("Cel"), "°F": Conversion("[degF]"), "K": Conversion("K"),
    "%": Conversion("%"),
    "Pa": Conversion("Pa"), "hPa": Conversion("Pa", 100), "mbar": Conversion("Pa", 100),
    "kPa": Conversion("Pa", 1000), "bar": Conversion("Pa", 100_000), "psi": Conversion("[psi]"),
    "V": Conversion("V"), "mV": Conversion("mV"), "A": Conversion("A"), "mA": Conversion("mA"),
    "W": Conversion("W"), "kW": Conversion("kW"), "Wh": Conversion("Wh"), "kWh": Conversion("kWh"),
    "VA": Conversion("VA"), "var": Conversion("var"),
    "dBm": Conversion("dBm"), "dB": Conversion("dB"), "dBa": Conversion("dB"),
    "lx": Conversion("lx"), "UV index": Conversion(None), "W/m²": Conversion("W/m2"),
    "µS/cm": Conversion("uS/cm"), "ohm": Conversion("Ohm"),
    "ppm": Conversion("ppm"), "ppb": Conversion("ppb"),
    "µg/m³": Conversion("ug/m3"), "mg/m³": Conversion("mg/m3"), "p/m³": Conversion("/m3"),
    "g": Conversion("g"), "kg": Conversion("kg"), "mg": Conversion("mg"), "µg": Conversion("ug"),
    "lb": Conversion("[lb_av]"), "oz": Conversion("[oz_av]"),
    "mm": Conversion("mm"), "cm": Conversion("cm"), "m": Conversion("m"), "km": Conversion("km"),
    "in": Conversion("[in_i]"), "ft": Conversion("[ft_i]"),
    "μs": Conversion("us"), "ms": Conversion("ms"), "s": Conversion("s"), "min": Conversion("min"),
    "h": Conversion("h"), "d": Conversion("d"),
    "L": Conversion("L"), "mL": Conversion("mL"), "m³": Conversion("m3"), "m³/h": Conversion("m3/h"),
    "L/min": Conversion("L/min"), "L/h": Conversion("L/h"),
    "m/s": Conversion("m/s"), "km/h": Conversion("km/h"), "m/s²": Conversion("m/s2"),
    "°": Conversion("deg"), "°/s": Conversion("deg/s"), "rpm": Conversion("1/min"),
    "Hz": Conversion("Hz"), "mm/h": Conversion("mm/h"),
}  # fmt: skip

# A percentage means the relative humidity or the battery level for these device classes.
PERCENT_OF = {"humidity": "%RH", "battery": "%EL", "moisture": "%"}

# Device classes whose values are whole numbers: their points are ``int``.
WHOLE = frozenset({"battery", "signal_strength", "count", "packet_id", "rssi"})

# Parser keys renamed for edged, and those not reported (BTHome's packet id serves deduplication).
KEYS = {"signal_strength": "rssi"}
DROPPED = frozenset({"packet_id"})


class PointSpec(NamedTuple):
    key: str
    unit: str | None
    type: ValueType
    factor: float


def spec(key: str, device_class: str | None, native_unit: str | None, binary: bool = False) -> PointSpec:
    """What a parser's sensor (``key``, its device class and native unit) becomes as a point."""
    key = KEYS.get(key, key)
    if binary:
        return PointSpec(key, None, ValueType.BOOL, 1.0)
    conversion = UNITS.get(native_unit) or Conversion(native_unit)
    unit = PERCENT_OF.get(device_class or "", "%") if native_unit == "%" else conversion.unit
    kind = ValueType.INT if device_class in WHOLE and conversion.factor == 1 else ValueType.FLOAT
    return PointSpec(key, unit, kind, conversion.factor)


def value(point: PointSpec, native: object) -> Value | None:
    """The parser's value as this point's value; None for a value that is not there, or that
    cannot be one of the point's type (a text where a number was reported before)."""
    if native is None:
        return None
    if point.type is ValueType.BOOL:
        return bool(native)
    if point.type is ValueType.STR:
        return native.isoformat() if isinstance(native, (datetime, date)) else str(native)
    if isinstance(native, bool):
        native = int(native)
    if not isinstance(native, (int, float, Decimal)):
        return None
    number = float(native) * point.factor if point.factor != 1 else native
    if not math.isfinite(number):
        return None
    if point.type is ValueType.INT:
        return round(float(number))
    return round(float(number), 6)
