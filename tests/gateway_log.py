"""The gateway's log as a person reads it: ``edged.logs.setup`` writing its text lines to a buffer.

``gateway_log`` (a fixture: import ``gateway_log_fixture`` into a test module) sets up logging
as ``edged run`` does and restores what was there before after the test.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping

import pytest

from edged import logs

LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(\S+): (.*)$")


class _Stream(io.StringIO):
    """A buffer that wakes whoever waits for the next line."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def write(self, text: str) -> int:
        count = super().write(text)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.written.set()
        else:
            self.loop.call_soon_threadsafe(self.written.set)
        return count


class GatewayLog:
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    async def until(self, predicate: Callable[[], object], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` is true, checked again after every line logged."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.stream.written.clear()
                await self.stream.written.wait()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[tuple[str, str, str]]:
        """``(level, logger, message)`` of each line; a line that is none (a traceback's) is ``("", "", text)``."""
        found = []
        for text in self.text.splitlines():
            match = LINE.match(text)
            found.append((match[1], match[2], match[3]) if match else ("", "", text))
        return found

    def library_errors(self) -> list[str]:
        """The lines a protocol library logged at ERROR or above."""
        return [f"{logger}: {message}" for level, logger, message in self.lines()
                if level in ("ERROR", "CRITICAL") and not logger.startswith("edged")]  # fmt: skip

    def tracebacks(self) -> list[str]:
        return [message for _, _, message in self.lines() if message.startswith("Traceback")]

    def frame_dumps(self) -> list[str]:
        """Lines holding raw frames (pymodbus's ``>>>>> send: 0x0 0xb ...``, hex dumps)."""
        return [message for _, _, message in self.lines() if ">>>>>" in message or re.search(r"(0x[0-9a-f]{1,2} ){4}", message)]

    def about(self, device_id: str) -> list[str]:
        """The messages of the lines about ``device_id`` (named ``[device_id]``), without that prefix."""
        prefix = f"[{device_id}] "
        return [message[len(prefix):] for _, _, message in self.lines() if message.startswith(prefix)]


class PeerLines(logging.Filter):
    """Leaves out what a test's own peer logs in the test's process (pymodbus's server, asyncua's server)."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        super().__init__()
        self.paths = paths

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(path in record.pathname for path in self.paths)


PEERS = ("/pymodbus/server/", "/pymodbus/datastore/", "/pymodbus/simulator/", "/asyncua/server/")


def capture(level: str = "info", log_levels: Mapping[str, str] | None = None) -> GatewayLog:
    """Log as ``edged run`` does, into a ``GatewayLog`` (in a running event loop)."""
    stream = _Stream()
    handler = logs.setup(level, "text", log_levels, stream)
    handler.addFilter(PeerLines(PEERS))
    return GatewayLog(stream)


@pytest.fixture(name="gateway_log")
async def gateway_log_fixture() -> AsyncIterator[GatewayLog]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in logs.LIBRARIES}
    try:
        yield capture()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, library_level in libraries.items():
            logging.getLogger(name).setLevel(library_level)
