"""Devices that behave like real ones, for demos, tests and laptops.

- thermostat: ``temperature`` drifts toward ``setpoint`` while ``heating`` is
  on and cools toward 15 Cel otherwise; the thermostat switches ``heating``
  itself with 0.5 K hysteresis. ``setpoint`` is writable.
- relay: ``relay`` (writable) and the ``power`` drawn by its load.
- energy_meter: ``voltage``, ``current``, ``power`` and an ``energy`` counter
  that integrates power.

``outage(device_id, seconds)`` takes one device away for a while, as if it
lost power: it goes offline, sends nothing and takes no writes, then comes
back (``POST /api/adapters/{instance}/outage``, ``edged simulated outage``).
"""

from __future__ import annotations

import asyncio
import random
import time

from edged.adapter import Adapter
from edged.adapters.simulated.config import SimulatedConfig, SimulatedDevice
from edged.errors import CommandError
from edged.model import Command, Device, Point, Reading, ValueType

FLOAT, BOOL = ValueType.FLOAT, ValueType.BOOL

POINTS: dict[str, list[Point]] = {
    "thermostat": [
        Point("temperature", FLOAT, "Cel"),
        Point("setpoint", FLOAT, "Cel", writable=True),
        Point("heating", BOOL),
    ],
    "relay": [Point("relay", BOOL, writable=True), Point("power", FLOAT, "W")],
    "energy_meter": [
        Point("voltage", FLOAT, "V"),
        Point("current", FLOAT, "A"),
        Point("power", FLOAT, "W"),
        Point("energy", FLOAT, "kWh"),
    ],
}

INITIAL: dict[str, dict[str, float | bool]] = {
    "thermostat": {"temperature": 19.0, "setpoint": 21.0, "heating": True},
    "relay": {"relay": False, "power": 0.0},
    "energy_meter": {"voltage": 230.0, "current": 2.0, "power": 460.0, "energy": 1234.5},
}


class SimulatedAdapter(Adapter[SimulatedConfig]):
    config_model = SimulatedConfig

    async def start(self) -> None:
        self._random = random.Random(self.config.seed)
        self._state: dict[str, dict[str, float | bool]] = {}
        self._kinds: dict[str, SimulatedDevice] = {}
        self._away_until: dict[str, float] = {}  # device id -> loop time its outage ends
        for spec in self.config.devices:
            device_id = self.device_id(spec.id)
            self._kinds[device_id] = spec
            self._state[device_id] = dict(INITIAL[spec.kind])
            points = {p.key: Point(p.key, p.type, p.unit, p.writable) for p in POINTS[spec.kind]}
            self.add_device(Device(device_id, self.name, spec.name or spec.id, "edged", f"simulated {spec.kind}", points))
        self.tasks.spawn(self._tick(), name=f"{self.name} tick")

    async def stop(self) -> None:
        pass

    def outage(self, device_id: str, seconds: float) -> None:
        """Take ``device_id`` offline for ``seconds``: no readings, no writes, then back as it was."""
        if device_id not in self._state:
            raise CommandError(f"{self.name} has no device {device_id!r}")
        self._away_until[device_id] = asyncio.get_running_loop().time() + seconds
        self.set_online(device_id, False)
        self.log.info("%s is away for %g s", device_id, seconds)

    def _away(self, device_id: str) -> bool:
        until = self._away_until.get(device_id)
        if until is None:
            return False
        if asyncio.get_running_loop().time() < until:
            return True
        del self._away_until[device_id]
        self.set_online(device_id, True)
        return False

    async def write(self, command: Command) -> None:
        state = self._state.get(command.device_id)
        if state is None or command.key not in state:
            raise CommandError(f"no such point {command.device_id}.{command.key}")
        if self._away(command.device_id):
            raise CommandError(f"{command.device_id} does not answer")
        if command.key == "setpoint" and not 5.0 <= float(command.value) <= 30.0:  # type: ignore[arg-type]
            raise CommandError("setpoint must be between 5 and 30 Cel")
        state[command.key] = command.value  # type: ignore[assignment]
        self._step(command.device_id, 0.0)
        self.publish(self._readings(command.device_id, time.time()))

    async def _tick(self) -> None:
        for device_id in self._state:
            self.set_online(device_id, True)
        interval = self.config.interval
        while True:
            now = time.time()
            batch: list[Reading] = []
            for device_id in self._state:
                self._step(device_id, interval)
                if not self._away(device_id):
                    batch.extend(self._readings(device_id, now))
            self.publish(batch)
            await asyncio.sleep(interval)

    def _readings(self, device_id: str, now: float) -> list[Reading]:
        return [Reading(device_id, key, value, now) for key, value in self._state[device_id].items()]

    def _step(self, device_id: str, dt: float) -> None:
        s = self._state[device_id]
        noise = self._random.gauss
        kind = self._kinds[device_id].kind
        if kind == "thermostat":
            target = 26.0 if s["heating"] else 15.0
            s["temperature"] = round(float(s["temperature"]) + (target - float(s["temperature"])) * 0.02 * dt + noise(0, 0.02), 2)
            if float(s["temperature"]) < float(s["setpoint"]) - 0.5:
                s["heating"] = True
            elif float(s["temperature"]) > float(s["setpoint"]) + 0.5:
                s["heating"] = False
        elif kind == "relay":
            s["power"] = round(max(0.0, 60.0 + noise(0, 1.5)), 1) if s["relay"] else 0.0
        else:
            s["voltage"] = round(230.0 + noise(0, 1.2), 1)
            s["current"] = round(min(32.0, max(0.1, float(s["current"]) + noise(0, 0.15))), 2)
            s["power"] = round(float(s["voltage"]) * float(s["current"]), 1)
            s["energy"] = round(float(s["energy"]) + float(s["power"]) * dt / 3_600_000, 4)
