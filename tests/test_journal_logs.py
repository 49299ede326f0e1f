"""Under systemd, what journald reads from ``edged run`` carries each line's
syslog priority, so ``journalctl -p warning`` filters by level; anywhere
else the lines are plain."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from edged import logs
from tests.daemon_process import DaemonProcess, free_port

CONFIG = """\
gateway:
  id: journal-test
  state_dir: state
status:
  http: {{host: 127.0.0.1, port: {port}}}
adapters:
  - type: simulated
    name: sim
    interval: 100ms
    devices:
      - {{id: thermostat, kind: thermostat}}
  - type: modbus
    name: mb
    connections:
      - {{transport: tcp, host: 127.0.0.1, port: {dead}, timeout: 0.2,
          devices: [{{id: meter, unit_id: 1, interval: 0.1, points: [{{key: power, address: 0}}]}}]}}
"""

# What journald makes of a line: an optional "<N>" priority, then the text (info when there is none).
PREFIX = re.compile(r"^<([0-7])>")
LEVELS = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}


class JournalProcess(DaemonProcess):
    """``edged run`` whose standard output and error are one pipe that ``JOURNAL_STREAM`` names
    (as systemd does with ``StandardOutput=journal``), or does not name."""

    def __init__(self, config: Path, port: int, *, journal: bool) -> None:
        super().__init__(config, port, args=["--log-level", "debug"])
        self.journal = journal

    async def start(self) -> None:
        read_fd, write_fd = os.pipe()
        stat = os.fstat(write_fd)
        if self.journal:
            self.extra_env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
        else:
            self.extra_env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino + 1}"  # another stream: not ours
        loop = asyncio.get_running_loop()
        self._output = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self._output), os.fdopen(read_fd, "rb"))
        self._dir_and_socket()
        env = {**os.environ, "NOTIFY_SOCKET": self._notify, "PYTHONUNBUFFERED": "1", **self.extra_env}
        self.started = time.monotonic()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edged", "run", "-c", str(self.config), *self.args,
                stdout=write_fd, stderr=write_fd, env=env,
            )
        finally:
            os.close(write_fd)
        self._reader = asyncio.create_task(self._read_journal())

    def _dir_and_socket(self) -> None:
        self._dir = tempfile.TemporaryDirectory()
        self._notify = os.path.join(self._dir.name, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self._notify)
        self._sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._on_notify)

    async def _read_journal(self) -> None:
        async for raw in self._output:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            for text, future in list(self._line_waiters):
                if text in line and not future.done():
                    future.set_result(line)


async def run_edged(tmp_path: Path, *, journal: bool) -> list[str]:
    """Every line ``edged run`` wrote from its start until it stopped on SIGTERM."""
    port = free_port()
    os.mkdir(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(port=port, dead=free_port()))
    process = JournalProcess(config, port, journal=journal)
    await process.start()
    try:
        await process.wait_notification("READY=1")
        await process.wait_line("is not connected")  # the Modbus device that is not there: a warning
        await process.wait_line("sim/thermostat")
        process.signal(signal.SIGTERM)
        assert await process.wait_exit() == 0
    finally:
        await process.close()
    return process.lines


async def test_on_the_journal_every_line_carries_its_priority_and_elsewhere_none(tmp_path: Path) -> None:
    lines = await run_edged(tmp_path / "journal", journal=True)
    seen: set[int] = set()
    for line in lines:
        match = PREFIX.match(line)
        assert match, f"a line without its priority: {line!r}"
        priority, text = int(match.group(1)), line[match.end():]
        level = text.split(" ", 1)[0]
        if level in LEVELS:  # a record's first line (a traceback's lines carry its priority too)
            assert priority == LEVELS[level], line
            seen.add(priority)
    assert {4, 6, 7} <= seen, f"expected warning, info and debug lines; saw priorities {sorted(seen)}"

    # Another stream than the journal (JOURNAL_STREAM names one, but not this output): plain lines.
    lines = await run_edged(tmp_path / "elsewhere", journal=False)
    assert any(line.startswith("WARNING ") for line in lines)
    assert not [line for line in lines if PREFIX.match(line)]


def test_priorities_follow_the_levels() -> None:
    assert [logs.priority(level) for level in (50, 40, 30, 20, 10, 5)] == [2, 3, 4, 6, 7, 7]
