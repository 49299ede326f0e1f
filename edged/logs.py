"""Logging: one line per event, with the device id where there is one.
Plain text for journald (which adds its own timestamps), or JSON lines.

When standard output is the journal (systemd sets ``JOURNAL_STREAM`` to its
device and inode), every line starts with its syslog priority (``<3>``
error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug), which journald takes
off and keeps as the entry's priority: ``journalctl -p warning`` then shows
only warnings and worse. Anywhere else lines carry no prefix.

A line about a device names it once, in one place: ``[<device id>]`` after
the logger's name (text), or the ``device`` field (JSON). Code that talks to
a device does so inside ``about(device_id)``; a protocol library's lines
logged there are named after the device too.

The protocol libraries (pymodbus, asyncua, zigpy and its radio libraries,
bleak, aiomqtt and paho, aiocoap) log through the same handler, each capped
at WARNING unless ``gateway.log_levels`` sets its own level. A library's
ERROR inside ``about()`` is a device fault edged reports itself: it is shown
at DEBUG, for that library only. Raw frame dumps (pymodbus appends its last
frames to its errors) are cut unless the library logs at DEBUG.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TextIO

# syslog priorities by the lowest logging level they stand for, highest first.
PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
DEBUG_PRIORITY = 7

# The loggers of the protocol libraries, capped at WARNING unless configured.
LIBRARIES = (
    "pymodbus", "asyncua", "zigpy", "bellows", "zigpy_znp", "zigpy_deconz", "zigpy_xbee", "zigpy_zigate", "zhaquirks",
    "bleak", "dbus_fast", "aiomqtt", "paho", "aiocoap", "coap", "aiohttp.access",
)  # fmt: skip
LIBRARY_LEVEL = logging.WARNING
ALSO = {"aiocoap": ("coap",)}  # a library that logs under another name too: aiocoap's client logs as "coap"
FRAME_DUMP = "\n>>>>> "  # where pymodbus's dump of the last frames begins in a message

_device: contextvars.ContextVar[str | None] = contextvars.ContextVar("edged_device", default=None)


@contextlib.contextmanager
def about(device_id: str) -> Iterator[None]:
    """Lines logged inside the block by a protocol library are about ``device_id``, and
    its errors are faults edged reports itself (see the module's docstring)."""
    token = _device.set(device_id)
    try:
        yield
    finally:
        _device.reset(token)


def _device_of(record: logging.LogRecord) -> str | None:
    device = getattr(record, "device", None)
    return device if isinstance(device, str) and device else None


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        device = _device_of(record)
        text = f"{record.levelname:<7} {record.name}: {'[' + device + '] ' if device else ''}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        device = _device_of(record)
        if device:
            entry["device"] = device
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def priority(level: int) -> int:
    """The syslog priority of a logging level: 2 critical, 3 error, 4 warning, 6 info, 7 debug."""
    return next((prio for floor, prio in PRIORITIES if level >= floor), DEBUG_PRIORITY)


def is_journal(stream: TextIO, journal_stream: str | None = None) -> bool:
    """Whether ``stream`` is the journal: its device and inode are those ``JOURNAL_STREAM`` names."""
    expected = os.environ.get("JOURNAL_STREAM") if journal_stream is None else journal_stream
    if not expected:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (a StringIO) or a closed one
        return False
    return expected.strip() == f"{stat.st_dev}:{stat.st_ino}"


class JournalFormatter(logging.Formatter):
    """Another formatter's lines, each starting with the record's syslog priority (``<4>``)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


class LibraryLines(logging.Filter):
    """On edged's handler: names a library's line after the device it was logged about,
    shows a library's error about a device edged reports at DEBUG, cuts frame dumps."""

    def __init__(self, libraries: tuple[str, ...] = LIBRARIES) -> None:
        super().__init__()
        self.libraries = libraries

    def library(self, name: str) -> str | None:
        """The library whose logger ``name`` is (or is under); None for edged's own."""
        for library in self.libraries:
            if name == library or name.startswith(library + "."):
                return library
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.library(record.name) is None:
            return True
        debug = logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        device = _device.get()
        if device is not None:
            if _device_of(record) is None:
                record.device = device
            if record.levelno >= logging.ERROR:
                if not debug:
                    return False
                record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        if not debug and isinstance(record.msg, str) and FRAME_DUMP in record.msg:
            record.msg = record.msg[: record.msg.index(FRAME_DUMP)]
        return True


def library_levels(level: int, configured: Mapping[str, str] | None = None) -> dict[str, int]:
    """The level of each library's logger: ``configured`` (by logger name) where given, else
    WARNING (or ``level`` when edged itself logs less)."""
    levels = {name: max(LIBRARY_LEVEL, level) for name in LIBRARIES}
    for name, value in (configured or {}).items():
        for logger in (name, *ALSO.get(name, ())):
            levels[logger] = logging.getLevelName(value.upper())
    return levels


def setup(
    level: str = "info", fmt: str = "text", log_levels: Mapping[str, str] | None = None, stream: TextIO | None = None,
) -> logging.Handler:
    """Send every line to ``stream`` (standard output) at ``level``, the libraries' as ``log_levels`` says,
    with syslog priorities when it is the journal; returns the handler."""
    stream = stream or sys.stdout
    handler = logging.StreamHandler(stream)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handler.setFormatter(JournalFormatter(formatter) if is_journal(stream) else formatter)
    handler.addFilter(LibraryLines())
    logging.getLogger().handlers[:] = [handler]
    set_levels(level, log_levels)
    return handler


def set_levels(level: str, log_levels: Mapping[str, str] | None = None) -> None:
    """edged's level, and each library's and logger's as ``log_levels`` says (see ``library_levels``);
    a logger named before and no longer is set back to the level it would have had."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    named = {logger for name in log_levels or {} for logger in (name, *ALSO.get(name, ()))}
    for name in _named - named:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _named.clear()
    _named.update(named)
    for name, library_level in library_levels(root.level, log_levels).items():
        logging.getLogger(name).setLevel(library_level)


_named: set[str] = set()  # the loggers ``log_levels`` named last
