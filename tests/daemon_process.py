"""Run ``edged run`` as a real process for tests and benchmarks: it is
given a systemd notification socket, so readiness is an event we await
(``READY=1``), not a guess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DaemonProcess:
    def __init__(self, config: Path, port: int, extra_env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.extra_env = extra_env or {}
        self.args = args or []
        self.notifications: asyncio.Queue[str] = asyncio.Queue()
        self.lines: list[str] = []
        self._line_waiters: list[tuple[str, asyncio.Future[str]]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0

    async def start(self) -> None:
        self._dir = tempfile.TemporaryDirectory()
        path = os.path.join(self._dir.name, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.setblocking(False)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._sock.fileno(), self._on_notify)
        env = {**os.environ, "NOTIFY_SOCKET": path, "PYTHONUNBUFFERED": "1", **self.extra_env}
        self.started = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edged", "run", "-c", str(self.config), *self.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )
        self._reader = asyncio.create_task(self._read_output())

    def _on_notify(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.notifications.put_nowait(self._sock.recv(4096).decode())

    async def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            for text, future in list(self._line_waiters):
                if text in line and not future.done():
                    future.set_result(line)

    async def wait_line(self, text: str, timeout: float = 10.0) -> str:
        """Wait for an output line containing ``text`` (earlier lines count)."""
        for line in self.lines:
            if text in line:
                return line
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._line_waiters.append((text, future))
        async with asyncio.timeout(timeout):
            return await future

    async def wait_notification(self, text: str, timeout: float = 10.0) -> float:
        """Wait for a notification containing ``text``; returns seconds since start."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.notifications.get()
                if text in message:
                    return time.monotonic() - self.started

    async def get(self, path: str) -> tuple[int, object]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, json.loads(await response.text())

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
        await self._reader
        return code

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._dir.cleanup()


@contextlib.asynccontextmanager
async def daemon(config: Path, port: int, **kwargs: object) -> AsyncIterator[DaemonProcess]:
    process = DaemonProcess(config, port, **kwargs)  # type: ignore[arg-type]
    await process.start()
    try:
        yield process
    finally:
        await process.close()
