"""A real Hub with a few devices behind a fake adapter writer, and an engine
on a ManualClock: time moves only when a test says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter

from edged.hub import Hub
from edged.model import Command, Device, Point, Reading, ValueType
from edged.rules.clock import ManualClock
from edged.rules.config import Rule, Rules
from edged.rules.engine import RulesEngine

START = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC, a Sunday

DEVICES = {
    "dev/relay": [Point("relay", ValueType.BOOL, writable=True), Point("power", ValueType.FLOAT, "W")],
    "dev/lamp": [Point("on", ValueType.BOOL, writable=True), Point("level", ValueType.INT, writable=True)],
    "dev/meter": [Point("power", ValueType.FLOAT, "W")],
    "dev/motion": [Point("occupancy", ValueType.BOOL), Point("illuminance", ValueType.FLOAT, "lx")],
    "dev/thermo": [Point("temperature", ValueType.FLOAT, "Cel"), Point("setpoint", ValueType.FLOAT, "Cel", writable=True)],
}


def parse_rules(text: str) -> list[Rule]:
    return TypeAdapter(Rules).validate_python(yaml.safe_load(text))


class Devices:
    """The adapter side: records every command and, like a real device,
    reports the written value back as a reading (``echo``)."""

    def __init__(self, hub: Hub, clock: ManualClock) -> None:
        self.hub = hub
        self.clock = clock
        self.commands: list[Command] = []
        self.echo = True
        for device_id, points in DEVICES.items():
            hub.add_device(Device(device_id, "dev", points={p.key: p for p in points}, online=True))
        hub.attach_writer("dev", self.write)

    async def write(self, command: Command) -> None:
        self.commands.append(command)
        if self.echo:
            self.hub.publish([Reading(command.device_id, command.key, command.value, self.clock.now())])

    def publish(self, point: str, value: object) -> None:
        device, _, key = point.rpartition(".")
        self.hub.publish([Reading(device, key, value, self.clock.now())])  # type: ignore[arg-type]

    @property
    def writes(self) -> list[tuple[str, object]]:
        return [(f"{c.device_id}.{c.key}", c.value) for c in self.commands]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def devices(hub: Hub, clock: ManualClock) -> Devices:
    return Devices(hub, clock)


Start = Callable[..., Awaitable[RulesEngine]]


@pytest.fixture
async def start_engine(hub: Hub, clock: ManualClock, tmp_path: Path) -> AsyncIterator[Start]:
    """``await start_engine(yaml_text)``: a running engine on the test's Hub and clock."""
    tasks: list[asyncio.Task[None]] = []

    async def start(text: str, timezone: str = "UTC", state_dir: Path | None = None) -> RulesEngine:
        engine = RulesEngine(parse_rules(text), hub, state_dir or tmp_path / "rules", timezone, clock)
        tasks.append(asyncio.create_task(engine.run()))
        await asyncio.wait_for(engine.started.wait(), 10)
        return engine

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
