"""Whether the wall clock can be trusted: synchronised by network time.

A board without a real-time clock (most Raspberry Pis) boots with a wall
clock from its last shutdown, or from 1970, and steps it when an NTP client
(systemd-timesyncd, chrony, ntpd) first reaches a server. Readings stamped
before that step carry wrong times. The kernel knows whether its clock is
synchronised (``adjtimex``: the ``STA_UNSYNC`` status bit, and an estimated
error of less than 16 s, which is what ``timedatectl`` shows as "System clock
synchronized"); the gateway asks it, and the outbox marks what it stores
while the answer is no, so the cloud can tell such timestamps apart
(``"clock": "unsynced"`` in each message).

``gateway.clock: trusted`` skips the check, for a gateway whose real-time
clock is set by hand and that never sees a time server.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

STA_UNSYNC = 0x0040
TIME_ERROR = 5
MAX_ERROR_US = 16_000_000  # what the kernel reports once no time source has corrected it for a while


class _Timex(ctypes.Structure):
    """The head of the kernel's ``struct timex``; the rest is room for the fields not read here."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("rest", ctypes.c_byte * 256),
    ]


@functools.cache
def _adjtimex() -> Callable[[Any], int] | None:
    """libc's ``adjtimex``, looked up once (the process already has libc loaded)."""
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def kernel_clock_synced() -> bool | None:
    """True once a time client has synchronised the system clock; None when the kernel cannot be asked."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    timex = _Timex()  # modes 0: read only
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return state != TIME_ERROR and not timex.status & STA_UNSYNC and timex.maxerror < MAX_ERROR_US


class ClockWatch:
    """Keeps ``synced`` current and calls ``on_change(synced)`` when it changes.

    The kernel is asked every ``every`` seconds (one system call); with
    ``trusted`` it is never asked and the clock counts as synchronised."""

    def __init__(self, trusted: bool, on_change: Callable[[bool], None], probe: Callable[[], bool | None] = kernel_clock_synced,
                 every: float = 10.0) -> None:  # fmt: skip
        self.trusted = trusted
        self.on_change = on_change
        self.probe = probe
        self.every = every
        self.synced = True if trusted else self._ask()
        on_change(self.synced)

    def _ask(self) -> bool:
        answer = self.probe()
        return True if answer is None else answer  # a kernel that cannot tell is not second-guessed

    async def run(self) -> None:
        if self.trusted:
            return
        if not self.synced:
            log.warning("the system clock is not synchronised yet: readings are marked \"clock\": \"unsynced\" until it is")
        while True:
            await asyncio.sleep(self.every)
            synced = self._ask()
            if synced == self.synced:
                continue
            self.synced = synced
            if synced:
                log.info("the system clock is synchronised: readings are no longer marked")
            else:
                log.warning("the system clock lost its synchronisation: readings are marked \"clock\": \"unsynced\"")
            self.on_change(synced)
