"""Triggers at run time: each decides, from one reading or one event, whether
it fires, arms (a ``for:`` duration starts), disarms, or does nothing.

Triggers that read points start from the value the Hub already holds, so a
restart of the engine does not make every point look changed. A reading of
BAD quality changes nothing: a failing sensor is no crossing.
"""

from __future__ import annotations

import enum
from typing import Any

from edged.hub import Hub
from edged.model import CommandResult, DeviceEvent, DeviceStatus, Event, Quality, Reading, RuleEvent
from edged.rules import config as cfg
from edged.rules.config import PointRef
from edged.rules.schedule import Schedule, SunSchedule


class Verdict(enum.Enum):
    NONE = 0
    FIRE = 1
    ARM = 2  # crossed, but must stay for ``for_`` seconds
    DISARM = 3  # left again before ``for_`` elapsed


_UNSET: Any = object()


class TriggerState:
    """Base: triggers react to readings of ``points`` or to Hub events."""

    label = "trigger"
    points: tuple[PointRef, ...] = ()
    for_ = 0.0
    schedule: Schedule | SunSchedule | None = None

    def on_reading(self, reading: Reading) -> Verdict:
        return Verdict.NONE

    def on_event(self, event: Event) -> bool:
        return False


class ChangeState(TriggerState):
    def __init__(self, config: cfg.ChangeTrigger, hub: Hub) -> None:
        self.config = config
        self.points = (config.point,)
        known = hub.value(*config.point)
        self.previous = known.value if known is not None and known.quality is not Quality.BAD else _UNSET
        self.label = f"change {config.point}" + (f" to {config.to!r}" if config.to is not None else "")

    def on_reading(self, reading: Reading) -> Verdict:
        if reading.quality is Quality.BAD:
            return Verdict.NONE
        previous, self.previous = self.previous, reading.value
        if previous is _UNSET or previous == reading.value:
            return Verdict.NONE
        if self.config.to is not None and reading.value != self.config.to:
            return Verdict.NONE
        if self.config.from_ is not None and previous != self.config.from_:
            return Verdict.NONE
        return Verdict.FIRE


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


class ThresholdState(TriggerState):
    """Past the threshold means above ``above`` and below ``below``; it is left
    again only ``hysteresis`` beyond the threshold."""

    def __init__(self, config: cfg.ThresholdTrigger, hub: Hub) -> None:
        self.config = config
        self.points = (config.point,)
        self.for_ = config.for_
        known = hub.value(*config.point)
        number = _number(known.value) if known is not None and known.quality is not Quality.BAD else None
        self.past: bool | None = None if number is None else self._is_past(number)
        parts = [f"above {config.above:g}" if config.above is not None else "",
                 f"below {config.below:g}" if config.below is not None else "",
                 f"for {config.for_:g} s" if config.for_ else ""]  # fmt: skip
        self.label = f"threshold {config.point} " + " ".join(p for p in parts if p)

    def _is_past(self, value: float) -> bool:
        above, below = self.config.above, self.config.below
        return (above is None or value > above) and (below is None or value < below)

    def _is_clear(self, value: float) -> bool:
        above, below, margin = self.config.above, self.config.below, self.config.hysteresis
        return (above is not None and value <= above - margin) or (below is not None and value >= below + margin)

    def on_reading(self, reading: Reading) -> Verdict:
        if reading.quality is Quality.BAD:
            return Verdict.NONE
        value = _number(reading.value)
        if value is None:
            return Verdict.NONE
        if self.past is None:
            self.past = self._is_past(value)  # the first value sets the state; no crossing yet
            return Verdict.NONE
        if not self.past and self._is_past(value):
            self.past = True
            return Verdict.ARM if self.for_ else Verdict.FIRE
        if self.past and self._is_clear(value):
            self.past = False
            return Verdict.DISARM if self.for_ else Verdict.NONE
        return Verdict.NONE

    def resume_armed(self) -> bool:
        """Take up a ``for:`` timer saved before a restart, unless the point is known to be back."""
        if self.past is False:
            return False
        self.past = True
        return True


class DeviceState(TriggerState):
    def __init__(self, config: cfg.DeviceTrigger) -> None:
        self.config = config
        self.label = f"device {config.device} " + (config.to or "online/offline")

    def on_event(self, event: Event) -> bool:
        if not isinstance(event, DeviceStatus) or event.device_id != self.config.device:
            return False
        return self.config.to is None or event.online == (self.config.to == "online")


class CommandResultState(TriggerState):
    def __init__(self, config: cfg.CommandResultTrigger) -> None:
        self.config = config
        where = config.point or config.device or "any point"
        self.label = f"command result {where}" + (f" {'/'.join(config.status)}" if config.status else "")

    def on_event(self, event: Event) -> bool:
        if not isinstance(event, CommandResult):
            return False
        command, config = event.command, self.config
        if config.device is not None and command.device_id != config.device:
            return False
        if config.point is not None and (command.device_id, command.key) != config.point:
            return False
        return config.status is None or event.status.value in config.status


class EventState(TriggerState):
    def __init__(self, config: cfg.EventTrigger) -> None:
        self.config = config
        self.label = f"event {config.name}" + (f" from {config.rule}" if config.rule else "")

    def on_event(self, event: Event) -> bool:
        return (
            isinstance(event, RuleEvent)
            and event.name == self.config.name
            and (self.config.rule is None or event.rule_id == self.config.rule)
        )


class DeviceEventState(TriggerState):
    def __init__(self, config: cfg.DeviceEventTrigger) -> None:
        self.config = config
        parts = [config.name or "", f"from {config.device}" if config.device else "",
                 f"severity {config.min_severity}+" if config.min_severity else ""]  # fmt: skip
        self.label = " ".join(["device event", *(p for p in parts if p)])

    def on_event(self, event: Event) -> bool:
        config = self.config
        return (
            isinstance(event, DeviceEvent)
            and (config.device is None or event.device_id == config.device)
            and (config.name is None or event.name == config.name)
            and event.severity >= config.min_severity
        )


class ScheduleState(TriggerState):
    def __init__(self, config: cfg.ScheduleTrigger, timezone: str) -> None:
        self.schedule = Schedule(config, timezone)
        self.label = self.schedule.label


class SunState(TriggerState):
    def __init__(self, config: cfg.SunTrigger) -> None:
        self.schedule = SunSchedule(config)
        self.label = self.schedule.label


def make_trigger(config: Any, hub: Hub, timezone: str) -> TriggerState:
    """The run-time state for one trigger configuration."""
    if isinstance(config, cfg.ChangeTrigger):
        return ChangeState(config, hub)
    if isinstance(config, cfg.ThresholdTrigger):
        return ThresholdState(config, hub)
    if isinstance(config, cfg.DeviceTrigger):
        return DeviceState(config)
    if isinstance(config, cfg.CommandResultTrigger):
        return CommandResultState(config)
    if isinstance(config, cfg.EventTrigger):
        return EventState(config)
    if isinstance(config, cfg.DeviceEventTrigger):
        return DeviceEventState(config)
    if isinstance(config, cfg.ScheduleTrigger):
        return ScheduleState(config, timezone)
    if isinstance(config, cfg.SunTrigger):
        return SunState(config)
    raise TypeError(f"unknown trigger {config!r}")
