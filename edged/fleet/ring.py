"""The last log lines, kept in memory for the ``logs`` operation, and log levels set for a while.

``LogRing`` is a ``logging.Handler`` on the root logger holding at most
``size`` records (the oldest go first), so reading the gateway's recent log
from the cloud costs a bounded amount of memory whatever is logged.
``LevelOverride`` sets the root logger's level (``set_log_level``) and puts
the previous one back when its time is up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
MAX_LINE = 1000  # characters of one message kept in the ring


@dataclass(frozen=True, slots=True)
class Line:
    ts: float
    level: int
    logger: str
    device: str | None
    message: str

    def json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"ts": round(self.ts, 3), "level": logging.getLevelName(self.level).lower(),
                                 "logger": self.logger, "msg": self.message}  # fmt: skip
        if self.device:
            entry["device"] = self.device
        return entry


class LogRing(logging.Handler):
    """The last ``size`` log records, as ``Line``s."""

    def __init__(self, size: int) -> None:
        super().__init__(logging.DEBUG)
        self.lines: deque[Line] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        device = getattr(record, "device", None)
        self.lines.append(Line(record.created, record.levelno, record.name, str(device) if device else None, message[:MAX_LINE]))

    def resize(self, size: int) -> None:
        if size != self.lines.maxlen:
            self.lines = deque(self.lines, maxlen=size)

    def tail(self, count: int, level: int = logging.DEBUG, device: str | None = None) -> list[Line]:
        """The last ``count`` lines at ``level`` or above, about ``device`` when given, oldest first."""
        chosen: list[Line] = []
        for line in reversed(self.lines):
            if line.level >= level and (device is None or line.device == device or device in line.message):
                chosen.append(line)
                if len(chosen) >= count:
                    break
        chosen.reverse()
        return chosen


class LevelOverride:
    """The root logger's level, set for a while and then put back."""

    def __init__(self) -> None:
        self._saved: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.until: float | None = None  # wall-clock time the override ends

    def set(self, level: int, seconds: float) -> None:
        root = logging.getLogger()
        if self._saved is None:
            self._saved = root.level
        root.setLevel(level)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(seconds, self.restore)
        self.until = time.time() + seconds

    def restore(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._saved is not None:
            logging.getLogger().setLevel(self._saved)
            logging.getLogger(__name__).info("log level back to %s", logging.getLevelName(self._saved).lower())
        self._saved = None
        self.until = None
