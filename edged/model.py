"""The data model every adapter, rule and uplink speaks.

Readings travel in batches: a Modbus poll of 125 registers or an OPC UA
publish of 500 changes is one ``list[Reading]`` that passes through the Hub,
the rules engine and the outbox in one call each, never one task per value.
"""

from __future__ import annotations

import enum
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

Value: TypeAlias = bool | int | float | str | None


class Quality(enum.IntEnum):
    """How far a value can be trusted; the three OPC UA status code classes."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class ValueType(enum.StrEnum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    STR = "str"

    def coerce(self, value: object) -> Value:
        """Return ``value`` as this type, or raise ``ValueError`` saying why not.

        Only values a device can take pass: an ``int`` of 64 bits at most
        (int64 or uint64; the adapter checks its own type's range), a finite
        ``float``, text that is valid Unicode."""
        if self is ValueType.BOOL:
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.lower()]
        elif self is ValueType.INT:
            number = int(value) if isinstance(value, float) and value.is_integer() else value
            if isinstance(number, int) and not isinstance(number, bool):
                if not INT_MIN <= number <= INT_MAX:
                    raise ValueError(f"expected int, got {describe(value)}, out of the 64-bit range")
                return number
        elif self is ValueType.FLOAT:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    number = float(value)
                except OverflowError:
                    raise ValueError(f"expected float, got {describe(value)}, out of range for a float") from None
                if not math.isfinite(number):
                    raise ValueError(f"expected a finite float, got {describe(value)}")
                return number
        elif isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError("expected str, got text that is not valid Unicode (a lone surrogate)") from None
            return value
        raise ValueError(f"expected {self.value}, got {type(value).__name__} {describe(value)}")


INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what an int point takes: int64 and uint64


def describe(value: object, limit: int = 64) -> str:
    """``repr(value)`` for a reason people read, cut to about ``limit``
    characters; a huge integer is told by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    return text if len(text) <= limit else text[:limit] + "..."


_BOOL_WORDS = {"true": True, "false": False, "on": True, "off": False}


class Reading(NamedTuple):
    """One value of one point at one instant (``ts`` is UTC epoch seconds)."""

    device_id: str
    key: str
    value: Value
    ts: float
    quality: Quality = Quality.GOOD


@dataclass(slots=True)
class Point:
    key: str
    type: ValueType = ValueType.FLOAT
    unit: str | None = None
    writable: bool = False
    name: str | None = None


@dataclass(slots=True)
class Device:
    """A device as the Hub knows it; ``id`` is ``<adapter>/<native id>``."""

    id: str
    adapter: str
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    points: dict[str, Point] = field(default_factory=dict)
    online: bool = False
    last_seen: float | None = None  # when it last answered or sent a value that is not bad; None: never
    problem: Problem | None = None  # what last went wrong with it, until it recovers


@dataclass(slots=True)
class Problem:
    """What went wrong with a device, an adapter or an uplink, kept until it recovers.

    ``reason`` is the latest failure in a few words (``exception 11: gateway
    target failed to respond``, ``no answer within 0.5 s``); ``since`` is
    when this run of failures began and ``last`` when the latest happened
    (UTC epoch seconds); ``count`` is how many failures the run holds.
    ``point`` is the one point that fails, when the rest of the device works."""

    reason: str
    since: float
    last: float
    count: int = 1
    point: str | None = None

    @classmethod
    def again(cls, previous: Problem | None, reason: str, now: float, point: str | None = None) -> Problem:
        """``previous`` with one more failure (``reason``, at ``now``), or a new run of failures."""
        if previous is None:
            return cls(reason, now, now, point=point)
        previous.reason, previous.last, previous.count, previous.point = reason, now, previous.count + 1, point
        return previous


class CommandStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    PENDING = "pending"  # waiting in the Hub for an offline device (desired state)


class Origin(enum.StrEnum):
    RULE = "rule"
    CLOUD = "cloud"
    API = "api"


@dataclass(slots=True, frozen=True)
class Command:
    """A request to set one point of one device."""

    device_id: str
    key: str
    value: Value
    origin: Origin = Origin.API
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: float = field(default_factory=time.time)


@dataclass(slots=True, frozen=True)
class CommandResult:
    command: Command
    status: CommandStatus
    reason: str | None = None
    ts: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.status is CommandStatus.OK


@dataclass(slots=True, frozen=True)
class DeviceStatus:
    """A device went online or offline."""

    device_id: str
    online: bool
    ts: float


@dataclass(slots=True, frozen=True)
class DeviceAdded:
    device: Device


@dataclass(slots=True, frozen=True)
class DeviceRemoved:
    device_id: str


@dataclass(slots=True, frozen=True)
class RuleEvent:
    """Something a rule chose to tell the cloud (the ``event`` action)."""

    rule_id: str
    name: str
    data: dict[str, Value]
    ts: float


@dataclass(slots=True, frozen=True)
class DeviceEvent:
    """Something a device reported that is not a value: an alarm raised, acknowledged or cleared.

    ``name`` says what it is about (an OPC UA condition's name, else its event
    type); ``severity`` runs from 1 (least) to 1000 (most urgent), 0 when the
    device gives none; ``message`` is the device's own text; ``data`` holds the
    rest as JSON values (the alarm's states, its source, its event id)."""

    device_id: str
    name: str
    severity: int
    message: str | None
    data: dict[str, Any]
    ts: float


Event: TypeAlias = CommandResult | DeviceStatus | DeviceAdded | DeviceRemoved | RuleEvent | DeviceEvent
