"""A real Daemon in the test's event loop, with simulated devices and the
status servers on free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from edged.config import load_config
from edged.daemon import Daemon

BASE = """\
gateway:
  id: status-test
  state_dir: state
status:
{status}
adapters:
  - type: simulated
    name: sim
    interval: {interval}
    devices:
      - {{id: thermostat, kind: thermostat, name: Living room}}
      - {{id: relay, kind: relay}}
{extra}"""

StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(tmp_path: Path) -> AsyncIterator[StartDaemon]:
    """``await start_daemon(status_yaml, interval="50ms", extra=yaml)`` runs a Daemon until the test ends."""
    runs: list[tuple[Daemon, asyncio.Task[None]]] = []

    async def start(status: str = "  http: {host: 127.0.0.1, port: 0}", interval: str = "50ms", extra: str = "") -> Daemon:
        path = tmp_path / f"config{len(runs)}.yaml"
        path.write_text(BASE.format(status=status, interval=interval, extra=extra))
        daemon = Daemon(load_config(path), path)
        task = asyncio.create_task(daemon.run())
        runs.append((daemon, task))
        async with asyncio.timeout(10):
            ready = asyncio.create_task(daemon.ready.wait())
            done, _ = await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                ready.cancel()
                task.result()
                raise AssertionError("daemon stopped before it was ready")
        return daemon

    yield start
    for daemon, task in runs:
        daemon.stop()
        async with asyncio.timeout(15):
            await task


def http_url(daemon: Daemon) -> str:
    assert daemon.status is not None and daemon.status.port
    return f"http://127.0.0.1:{daemon.status.port}"
