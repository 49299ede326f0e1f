"""Ownership of background tasks: every task edged starts outside the
daemon's TaskGroup is created through a ``TaskSet``, which keeps a reference,
logs failures and cancels what is left when closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: asyncio.Future[None] | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(exc)
        else:
            log.error("task %s failed", task.get_name(), exc_info=exc)

    async def wait_failure(self) -> None:
        """Wait until a task of the set fails, then raise its exception."""
        self._failure = asyncio.get_running_loop().create_future()
        try:
            await self._failure
        finally:
            self._failure = None

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float = 5.0) -> None:
        """Cancel every task still running and wait for them, within ``timeout``."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


async def wait_until(changed: asyncio.Event, predicate: Callable[[], T], timeout: float | None = None) -> T:
    """``predicate()``'s first true result, checked again each time ``changed`` is set; ``TimeoutError`` after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not (result := predicate()):
            changed.clear()
            await changed.wait()
        return result
