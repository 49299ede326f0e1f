"""``edged rules check FILE`` and ``edged rules test FILE --readings RECORDING``.

``check`` validates a configuration (or a rules file: a mapping with a
``rules:`` list), including that every point a rule names exists on the
devices the configuration declares (Modbus, OPC UA and simulated devices;
Zigbee and BLE devices appear at run time), and lists each rule with the
points that wake it.

``test`` replays a recording of readings (JSON lines) against the rules on
a simulated clock and prints the commands and events they would issue, with
times, without touching any device: nothing is written, and timers go to a
throw-away state directory. A line is one reading,
``{"ts": 1750000000.0, "point": "sim/meter.power", "value": 1200}`` (``ts``
as epoch seconds or ISO 8601; or ``"device"`` and ``"key"`` instead of
``"point"``; ``"quality"`` good/uncertain/bad), or a device status change,
``{"ts": ..., "device": "sim/relay", "online": false}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_CONFIG = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    check = commands.add_parser("check", help="validate the rules of a configuration or rules file; exit 2 if invalid")
    check.add_argument("file", type=Path)
    test = commands.add_parser("test", help="replay recorded readings and print the commands the rules would issue")
    test.add_argument("file", type=Path)
    test.add_argument("--readings", type=Path, required=True, metavar="RECORDING", help="JSON lines of readings")
    test.add_argument("--after", default="0s", metavar="DURATION",
                      help="keep the clock running this long after the last reading (e.g. 10m), so delays end")  # fmt: skip
    test.add_argument("--timezone", help="overrides gateway.timezone")


def main(args: argparse.Namespace) -> int:
    from edged.cli import read_config

    config = read_config(args.file, check_points=args.rules_command == "check")
    if config is None:
        return EXIT_CONFIG
    if args.rules_command == "check":
        return _check(args.file, config)
    import asyncio

    from edged.fields import parse_duration

    try:
        after = parse_duration(args.after)
        steps = list(_read_recording(args.readings))
    except (ValueError, OSError) as exc:
        print(f"{args.readings if isinstance(exc, RecordingError) else 'edged rules test'}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    asyncio.run(_replay(config.rules, args.timezone or config.gateway.timezone, steps, after))
    return 0


def _check(file: Path, config: Any) -> int:
    from edged.hub import Hub
    from edged.rules.trigger import make_trigger

    hub = Hub()
    for rule in config.rules:
        wakes = [make_trigger(t, hub, config.gateway.timezone).label for t in rule.triggers]
        state = "" if rule.enabled else " (disabled)"
        print(f"{rule.id}{state}: {'; '.join(wakes)}")
    print(f"{file}: ok ({len(config.rules)} rule(s))")
    return 0


class RecordingError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Step:
    ts: float
    reading: Any = None  # edged.model.Reading
    device: str | None = None
    online: bool | None = None


def _read_recording(path: Path) -> Any:
    import datetime as dt

    from edged.model import Quality, Reading

    last = None
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                ts = item.get("ts", last)
                if isinstance(ts, str):
                    ts = dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                if not isinstance(ts, (int, float)):
                    raise ValueError("ts: expected epoch seconds or an ISO 8601 time")
                if last is not None and ts < last:
                    raise ValueError(f"ts goes back in time ({ts} after {last})")
                last = float(ts)
                if "online" in item:
                    yield Step(last, device=str(item["device"]), online=bool(item["online"]))
                    continue
                if "point" in item:
                    device, _, key = str(item["point"]).rpartition(".")
                else:
                    device, key = str(item["device"]), str(item["key"])
                quality = Quality[str(item.get("quality", "good")).upper()]
                yield Step(last, Reading(device, key, item["value"], last, quality))
            except (ValueError, KeyError, AttributeError) as exc:
                raise RecordingError(f"line {number}: {exc}") from exc


async def _replay(rules: Any, timezone: str, steps: list[Step], after: float) -> None:
    import asyncio
    import datetime as dt
    import tempfile

    from edged.hub import Hub
    from edged.model import Command, CommandResult, CommandStatus, Device, RuleEvent
    from edged.rules.clock import ManualClock
    from edged.rules.engine import RulesEngine

    class DryRunHub(Hub):
        """A Hub whose commands go nowhere: each one is reported as done."""

        async def execute(self, command: Command, *, hold_if_offline: bool = False) -> CommandResult:
            return self._finish(command, CommandStatus.OK, None)

    clock = ManualClock(steps[0].ts if steps else 0.0)
    hub = DryRunHub(clock=clock.now)

    def when(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def on_event(event: object) -> None:
        if isinstance(event, RuleEvent):
            print(f"{when(event.ts)}  {event.rule_id}  event {event.name} {json.dumps(event.data)}")

    hub.subscribe_events(on_event)
    with tempfile.TemporaryDirectory(prefix="edged-rules-test-") as state:
        engine = RulesEngine(rules, hub, Path(state), timezone, clock)

        def on_command(rule_id: str, command: Command) -> None:
            print(f"{when(clock.now())}  {rule_id}  write {command.device_id}.{command.key} = {json.dumps(command.value)}")

        engine.on_command = on_command
        task = asyncio.create_task(engine.run())
        await engine.started.wait()
        for step in steps:
            await clock.advance(step.ts - clock.now())
            if step.reading is not None:
                hub.publish([step.reading])
            else:
                if step.device not in hub.devices:
                    hub.add_device(Device(step.device, "replay", online=not step.online))  # type: ignore[arg-type]
                hub.set_online(step.device, bool(step.online))  # type: ignore[arg-type]
            await clock.settle()
        await clock.advance(after)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    print(f"replayed {len(steps)} line(s); {engine.firings_total} rule run(s), {engine.errors_total} error(s)")
