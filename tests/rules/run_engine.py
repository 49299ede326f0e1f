"""Run rules against the test devices and print, as JSON, what the engine did.

``python -m tests.rules.run_engine RULES_YAML STEPS_JSON`` publishes each
``[point, value]`` step as a reading and lets the engine settle after it.
Tests run it in a subprocess with a timeout, so an evaluation that never
ends fails the test instead of hanging it."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path

from edged.hub import Hub
from edged.rules.clock import ManualClock
from edged.rules.engine import RulesEngine
from tests.rules.conftest import START, Devices, parse_rules


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append({"level": record.levelname, "rule": getattr(record, "rule", None), "message": record.getMessage()})


async def run(rules: str, steps: list[tuple[str, object]]) -> dict[str, object]:
    hub, clock = Hub(), ManualClock(START)
    devices = Devices(hub, clock)
    collect = Collect()
    logging.getLogger("edged").addHandler(collect)
    with tempfile.TemporaryDirectory() as state:
        engine = RulesEngine(parse_rules(rules), hub, Path(state), "UTC", clock)
        task = asyncio.create_task(engine.run())
        await asyncio.wait_for(engine.started.wait(), 10)
        for point, value in steps:
            devices.publish(point, value)
            await clock.settle()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return {
        "errors_total": engine.errors_total,
        "outcomes": [entry["outcome"] for entry in engine.recent],
        "writes": devices.writes,
        "log": collect.lines,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(sys.argv[1], json.loads(sys.argv[2])))))
