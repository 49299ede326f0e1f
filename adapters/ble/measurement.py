"""What a decoded BLE frame says about one quantity; shared by every decoder."""

from __future__ import annotations

from typing import NamedTuple

from edged.model import Value, ValueType


class Measurement(NamedTuple):
    key: str
    value: Value
    unit: str | None  # SenML/UCUM symbol
    type: ValueType
