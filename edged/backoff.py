"""Reconnection with exponential backoff and jitter, in one place.

Every adapter and uplink reconnects through ``Backoff`` (and usually through
``retry_forever``) instead of writing its own loop."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2  # +/- this fraction of the delay
    _next: float = field(default=0.0, init=False)
    attempts: int = field(default=0, init=False)

    def next_delay(self) -> float:
        base = self._next or self.initial
        self._next = min(base * self.factor, self.maximum)
        self.attempts += 1
        return base * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = 0.0
        self.attempts = 0

    async def sleep(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay


async def retry_forever(
    what: str,
    attempt: Callable[[], Awaitable[None]],
    log: logging.Logger,
    backoff: Backoff | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
    healthy_after: float = 30.0,
) -> None:
    """Run ``attempt`` again and again: a failure is logged and retried after
    a backoff delay; the delay starts over once an attempt has lasted
    ``healthy_after`` seconds. Only cancellation ends the loop."""
    backoff = backoff or Backoff()
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await attempt()
            reason: BaseException | str = "ended"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure is retried; that is the point
            reason = exc
            if on_failure is not None:
                on_failure(exc)
        if loop.time() - started >= healthy_after:
            backoff.reset()
        delay = backoff.next_delay()
        log.warning("%s: %s; retrying in %.1f s", what, _describe(reason), delay)
        await asyncio.sleep(delay)


def _describe(reason: BaseException | str) -> str:
    if isinstance(reason, str):
        return reason
    text = str(reason)
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
