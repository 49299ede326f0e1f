from __future__ import annotations

from typing import Literal

from pydantic import Field

from edged.adapter import AdapterConfig
from edged.fields import DeclaredDevice, Duration


class SimulatedDevice(DeclaredDevice):
    kind: Literal["thermostat", "relay", "energy_meter"]


class SimulatedConfig(AdapterConfig):
    type: Literal["simulated"]
    interval: Duration = Field(1.0, gt=0)
    seed: int | None = None
    devices: list[SimulatedDevice] = Field(min_length=1)

    def declared_points(self) -> dict[str, dict[str, bool]]:
        from edged.adapters.simulated.adapter import POINTS

        return {f"{self.instance}/{d.id}": {p.key: p.writable for p in POINTS[d.kind]} for d in self.devices}
