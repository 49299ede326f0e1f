"""Configuration models of rules: triggers, conditions, actions and modes.

Every trigger, condition and action is picked by its ``type:`` key (a
discriminated union), so a mistake is reported against the one model it
meant, not against every member of the union. Points are written
``DEVICE.KEY`` (split at the last dot: ``sim/meter.power``) or, for keys that
hold a dot, ``{device: ID, key: KEY}``. Only pydantic and the standard
library are imported here, so checking a file costs nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from edged.fields import Duration, Model, name_check, unique
from edged.rules.expression import check_expression

ScalarValue = bool | int | float | str
BY_TYPE = Field(discriminator="type")  # a union's member is the one its ``type:`` names


class PointRef(NamedTuple):
    """One point of one device; hashes like the Hub's ``(device_id, key)``."""

    device: str
    key: str

    def __str__(self) -> str:
        return f"{self.device}.{self.key}"


def parse_point(value: Any) -> Any:
    if isinstance(value, PointRef):
        return value
    if isinstance(value, dict) and set(value) == {"device", "key"}:
        return PointRef(str(value["device"]), str(value["key"]))
    if isinstance(value, str):
        device, dot, key = value.rpartition(".")
        if dot and device and key:
            return PointRef(device, key)
    raise ValueError("expected a point as DEVICE.KEY (e.g. sim/meter.power) or {device: ID, key: KEY}")


Point = Annotated[PointRef, BeforeValidator(parse_point)]


def _check_expression(text: str) -> str:
    check_expression(text)
    return text


ExpressionText = Annotated[str, AfterValidator(_check_expression)]


def _check_zone(name: str | None) -> str | None:
    if name is not None:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as Europe/Berlin") from exc
    return name


Zone = Annotated[str | None, AfterValidator(_check_zone)]

# -- triggers -------------------------------------------------------------


class ChangeTrigger(Model):
    """A point's value changes (optionally from / to a given value)."""

    type: Literal["change"]
    point: Point
    to: ScalarValue | None = None
    from_: ScalarValue | None = Field(None, alias="from")


class Bounded(Model):
    """A numeric point compared with ``above``, ``below`` or both (a trigger's or a condition's)."""

    kind: ClassVar[str]  # what it is, for messages: "a numeric condition"
    point: Point
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> Bounded:
        if self.above is None and self.below is None:
            raise ValueError(f"{self.kind} needs above:, below: or both:")
        return self


class ThresholdTrigger(Bounded):
    """A numeric point crosses a threshold: fires on the crossing, once."""

    kind = "a threshold trigger"
    type: Literal["threshold"]
    hysteresis: float = Field(0.0, ge=0)
    for_: Duration = Field(0.0, alias="for")

    @model_validator(mode="after")
    def _band(self) -> ThresholdTrigger:
        if self.above is not None and self.below is not None and self.above >= self.below:
            raise ValueError(f"with both, above ({self.above:g}) must be less than below ({self.below:g}) (a band):")
        return self


class DeviceTrigger(Model):
    """A device goes online or offline (either, if ``to`` is not given)."""

    type: Literal["device"]
    device: str
    to: Literal["online", "offline"] | None = None


class ScheduleTrigger(Model):
    """A cron expression or a fixed interval, in the gateway's (or this) time zone."""

    type: Literal["schedule"]
    cron: str | None = None
    every: Duration | None = Field(None, gt=0)
    timezone: Zone = None
    # A cron firing missed while the gateway was down, at most this long ago, runs once at start.
    catch_up: Duration | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule trigger needs exactly one of cron: or every:")
        if self.catch_up is not None and self.cron is None:
            raise ValueError("catch_up applies to cron schedules, not to every:")
        if self.cron is not None:
            from croniter import croniter  # light, but only needed for schedules

            if not croniter.is_valid(self.cron):
                raise ValueError(f"expected a cron expression such as '*/5 * * * *'; got {self.cron!r}:")
        return self


class SunTrigger(Model):
    """Sunrise, sunset, dawn, dusk or solar noon at the gateway, optionally before or after it."""

    type: Literal["sun"]
    event: Literal["sunrise", "sunset", "dawn", "dusk", "noon"]
    before: Duration | None = None
    after: Duration | None = None
    # Filled in from gateway.location unless given here.
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)

    @model_validator(mode="after")
    def _where_and_when(self) -> SunTrigger:
        if self.latitude is None or self.longitude is None:
            raise ValueError("a sun trigger needs to know where the gateway is: set gateway.location: {latitude: ..., longitude: ...}:")
        if self.before is not None and self.after is not None:
            raise ValueError("give before: or after:, not both:")
        return self

    @property
    def offset(self) -> float:
        return (self.after or 0.0) - (self.before or 0.0)


class CommandResultTrigger(Model):
    """A command finished (any origin); filter by device, point and status."""

    type: Literal["command_result"]
    device: str | None = None
    point: Point | None = None
    status: list[Literal["ok", "failed", "timeout", "rejected", "pending"]] | None = None


class EventTrigger(Model):
    """A rule event (the ``event`` action) with this name, optionally from one rule."""

    type: Literal["event"]
    name: str
    rule: str | None = None


class DeviceEventTrigger(Model):
    """A device reported an event (an OPC UA alarm raised, acknowledged or cleared);
    filter by device, name and least severity (1..1000)."""

    type: Literal["device_event"]
    device: str | None = None
    name: str | None = None
    min_severity: int = Field(0, ge=0, le=1000)


Trigger = Annotated[
    ChangeTrigger
    | ThresholdTrigger
    | DeviceTrigger
    | ScheduleTrigger
    | SunTrigger
    | CommandResultTrigger
    | EventTrigger
    | DeviceEventTrigger,
    BY_TYPE,
]

# -- conditions -----------------------------------------------------------


class NumericCondition(Bounded):
    kind = "a numeric condition"
    type: Literal["numeric"]


class StateCondition(Model):
    """The point's current value is ``value`` (or one of a list of values)."""

    type: Literal["state"]
    point: Point
    value: ScalarValue | list[ScalarValue]


_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_time(value: Any) -> Any:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 86400:
        # YAML 1.1 reads an unquoted 07:30 as the base-60 number 450 (minutes) and
        # 07:30:15 as 27015 (seconds); below 1440 the number is taken as HH:MM.
        seconds = value * 60 if value < 1440 else value
        return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60)
    match = _TIME.match(str(value))
    if not match:
        raise ValueError("expected a time of day as HH:MM or HH:MM:SS")
    return dt.time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


TimeOfDay = Annotated[dt.time, BeforeValidator(_parse_time)]


class TimeCondition(Model):
    """Local time is within [after, before) (crossing midnight if after > before) on the given weekdays."""

    type: Literal["time"]
    after: TimeOfDay | None = None
    before: TimeOfDay | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _something(self) -> TimeCondition:
        if self.after is None and self.before is None and self.weekdays is None:
            raise ValueError("a time condition needs after:, before: or weekdays:")
        return self


class ConditionGroup(Model):
    """Conditions combined into one (``and``, ``or``, ``not``)."""

    conditions: list[Condition] = Field(min_length=1)


class AndCondition(ConditionGroup):
    type: Literal["and"]


class OrCondition(ConditionGroup):
    type: Literal["or"]


class NotCondition(ConditionGroup):
    """True when none of ``conditions`` holds."""

    type: Literal["not"]


class ExpressionCondition(Model):
    type: Literal["expression"]
    expression: ExpressionText


Condition = Annotated[
    NumericCondition | StateCondition | TimeCondition | AndCondition | OrCondition | NotCondition | ExpressionCondition,
    BY_TYPE,
]

# -- actions --------------------------------------------------------------


class WriteAction(Model):
    """Send a command to a point: a fixed ``value`` or an ``expression``."""

    type: Literal["write"]
    point: Point
    value: ScalarValue | None = None
    expression: ExpressionText | None = None

    @model_validator(mode="after")
    def _one_value(self) -> WriteAction:
        if (self.value is None) == (self.expression is None):
            raise ValueError("a write action needs exactly one of value: or expression:")
        return self


class DelayAction(Model):
    type: Literal["delay"]
    for_: Duration = Field(alias="for")


class WaitAction(Model):
    """Wait for a trigger; after ``timeout``, continue or stop the run."""

    type: Literal["wait"]
    trigger: Trigger
    timeout: Duration | None = None
    on_timeout: Literal["continue", "stop"] = "continue"


class IfAction(Model):
    type: Literal["if"]
    conditions: list[Condition] = Field(min_length=1)
    then: list[Action] = Field(min_length=1)
    else_: list[Action] = Field([], alias="else")


class Choice(Model):
    conditions: list[Condition] = Field(min_length=1)
    actions: list[Action] = Field(min_length=1)


class ChooseAction(Model):
    """Run the actions of the first choice whose conditions all hold, else ``default``."""

    type: Literal["choose"]
    choices: list[Choice] = Field(min_length=1)
    default: list[Action] = []


class ActionGroup(Model):
    """Actions run as one (``sequence``, ``parallel``)."""

    actions: list[Action] = Field(min_length=1)


class SequenceAction(ActionGroup):
    type: Literal["sequence"]


class ParallelAction(ActionGroup):
    """Run each action (a branch; use a sequence for several steps) at once; wait for all."""

    type: Literal["parallel"]


class EventAction(Model):
    """Publish a RuleEvent to the Hub (and so to the uplink)."""

    type: Literal["event"]
    name: str = Field(min_length=1)
    data: dict[str, ScalarValue | None] = {}


class LogAction(Model):
    type: Literal["log"]
    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"


Action = Annotated[
    WriteAction
    | DelayAction
    | WaitAction
    | IfAction
    | ChooseAction
    | SequenceAction
    | ParallelAction
    | EventAction
    | LogAction,
    BY_TYPE,
]

# -- rules ----------------------------------------------------------------


class Rule(Model):
    """One automation: when a trigger fires and the conditions hold, run the actions."""

    id: Annotated[str, AfterValidator(name_check("a rule id"))]
    description: str | None = None
    enabled: bool = True
    triggers: list[Trigger] = Field(min_length=1)
    conditions: list[Condition] = []
    actions: list[Action] = Field(min_length=1)
    mode: Literal["single", "restart", "queued", "parallel"] = "single"
    max: int = Field(10, ge=1)  # runs waiting (queued) or at once (parallel)
    debounce: Duration = 0.0  # run only once the triggers have been quiet this long
    throttle: Duration = 0.0  # at most one run started per this long
    loop_guard: Duration = 5.0  # a reading echoing the rule's own write within this long does not trigger it


Rules = Annotated[list[Rule], unique("id", "rules")]

for _model in (ConditionGroup, AndCondition, OrCondition, NotCondition, IfAction, Choice, ChooseAction, ActionGroup,
               SequenceAction, ParallelAction):  # fmt: skip
    _model.model_rebuild()



class PointProblem(NamedTuple):
    rule: int  # index in the rule list
    where: tuple[str | int, ...]  # key path of the point inside the rule, as written in YAML
    message: str


def referenced_points(rule: Rule) -> list[tuple[PointRef, bool, tuple[str | int, ...]]]:
    """Every point ``rule`` names (not those inside expressions): the point,
    whether the rule writes to it, and its key path inside the rule."""
    found: list[tuple[PointRef, bool, tuple[str | int, ...]]] = []

    def walk(node: Any, where: tuple[str | int, ...]) -> None:
        if isinstance(node, Model):
            for name, field in type(node).model_fields.items():
                value, here = getattr(node, name), (*where, field.alias or name)
                if isinstance(value, PointRef):
                    found.append((value, isinstance(node, WriteAction), here))
                else:
                    walk(value, here)
        elif isinstance(node, (list, tuple)):
            for index, item in enumerate(node):
                walk(item, (*where, index))

    walk(rule, ())
    return found


def point_problems(rules: list[Rule], adapters: list[Any]) -> list[PointProblem]:
    """Points the rules name that the adapters' configuration says cannot exist
    (a typo, mostly), or writes to points that are not writable.

    Only adapters that declare all their devices (``declared_points()``) are
    checked; a point of a Zigbee or BLE device may still appear at run time.
    A file of rules alone (no adapters) is not checked.
    """
    if not adapters:
        return []
    declared: dict[str, dict[str, bool]] = {}
    dynamic: set[str] = set()
    for adapter in adapters:
        points = adapter.declared_points()
        if points is None:
            dynamic.add(adapter.instance)
        else:
            declared.update(points)
    problems = []
    for index, rule in enumerate(rules):
        for ref, writes, where in referenced_points(rule):
            if ref.device.partition("/")[0] in dynamic:
                continue
            points = declared.get(ref.device)
            if points is None:
                message = f"no device {ref.device!r} in the configuration; got {str(ref)!r}"
            elif ref.key not in points:
                message = f"device {ref.device} has no point {ref.key!r} (it has {', '.join(points)})"
            elif writes and not points[ref.key]:
                message = f"{ref} is not writable"
            else:
                continue
            problems.append(PointProblem(index, where, message))
    return problems
