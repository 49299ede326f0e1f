from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from edged.hub import Hub
from edged.tasks import wait_until

if TYPE_CHECKING:
    from tests.uplink.peers import Broker


class Watch:
    """Await a condition on the Hub: the predicate is checked again after
    every reading batch and every event, so no test sleeps to synchronise."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._changed = asyncio.Event()
        self.batches = 0
        self.events: list[object] = []
        hub.subscribe(self._on_batch)
        hub.subscribe_events(self._on_event)

    def _on_batch(self, batch: object) -> None:
        self.batches += 1
        self._changed.set()

    def _on_event(self, event: object) -> None:
        self.events.append(event)
        self._changed.set()

    def poke(self) -> None:
        """Make waiters check their condition again (for changes the Hub does not see)."""
        self._changed.set()

    async def until(self, predicate: Callable[[], object], timeout: float = 10.0) -> object:
        return await wait_until(self._changed, predicate, timeout)


@pytest.fixture
def hub() -> Hub:
    return Hub()


@pytest.fixture
def watch(hub: Hub) -> Watch:
    return Watch(hub)


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., asyncio.Task[None]]]:
    """Run adapters (or any ``run()`` coroutine owner) for the test, cancelling them after."""
    tasks: list[asyncio.Task[None]] = []

    def start(part: object) -> asyncio.Task[None]:
        task = asyncio.create_task(part.run())  # type: ignore[attr-defined]
        tasks.append(task)
        return task

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# Property-based tests: a small budget by default; HYPOTHESIS_PROFILE=fuzz for a long run.
settings.register_profile("default", max_examples=100, deadline=None, database=None)
settings.register_profile("fuzz", max_examples=50_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto of the test's own on a free loopback port."""
    from tests.uplink.peers import Broker as Mosquitto

    (tmp_path / "broker").mkdir()
    running = Mosquitto(tmp_path / "broker")
    running.start()
    yield running
    running.stop()
