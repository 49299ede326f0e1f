"""Logging: one line per event, with the device id where there is one.
Plain text for journald (which adds its own timestamps), or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        device = getattr(record, "device", None)
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
        device = getattr(record, "device", None)
        if device:
            entry["device"] = device
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Protocol libraries are chatty at INFO; their warnings still come through.
    for name in ("aiohttp.access", "asyncua", "pymodbus", "zigpy", "bellows", "bleak", "aiocoap"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
