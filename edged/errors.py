"""edged's own exceptions. Library errors are translated into these at the
adapter or uplink edge, with the cause chained (``raise ... from exc``).

    EdgedError
    ├── ConfigError        a configuration file is invalid (file, line, key)
    ├── CommandError       a write was refused or failed; ``reason`` says why
    ├── AdapterError       a protocol adapter cannot reach or talk to its devices
    │   └── DeviceError    one device misbehaved (timeout, exception response, ...)
    └── UplinkError        the cloud connection failed
        └── Refused        the cloud answered, and did not take one message
"""

from __future__ import annotations

from dataclasses import dataclass


class EdgedError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong in a configuration, located in its source."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(EdgedError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class CommandError(EdgedError):
    """A command could not be carried out. ``str(exc)`` is the reason reported back."""


class AdapterError(EdgedError):
    pass


class DeviceError(AdapterError):
    def __init__(self, device_id: str, message: str) -> None:
        self.device_id = device_id
        super().__init__(f"{device_id}: {message}")


class UplinkError(EdgedError):
    pass


class Refused(UplinkError):
    """The cloud answered one message with a refusal (an MQTT 5 reason code of 0x80 or
    more, a CoAP 4.xx). ``reason`` is what it said; a ``permanent`` refusal will not
    change when the message is sent again (too large, malformed), a passing one may
    (not authorized until an ACL is fixed, quota exceeded)."""

    def __init__(self, where: str, reason: str, *, permanent: bool, final: bool = False) -> None:
        self.where = where  # the topic or URI
        self.reason = reason
        self.permanent = permanent
        self.final = final  # no point in another try: the message can never be sent as it is
        super().__init__(f"{where}: {reason}")
