"""Pending timers of the rules engine, kept in ``timers.json`` in the state
directory so that delays, waits, ``for:`` durations, debounce timers and
queued firings survive a restart.

Entries are small JSON objects by key. Changes mark the store dirty; the
engine's ``flush`` task writes the latest snapshot in a worker thread
(write to a temporary file, fsync, rename: a crash leaves the old or the new
file, never half of one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any

from edged.files import write_atomic

log = logging.getLogger(__name__)


class TimerStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "timers.json"
        self.entries: dict[str, dict[str, Any]] = {}
        self._dirty = asyncio.Event()
        # A cancelled flush goes on in its thread; the lock and the sequence number keep an
        # older snapshot from landing after a newer one.
        self._lock = threading.Lock()
        self._sequence = 0
        self._written = 0

    def load(self) -> dict[str, dict[str, Any]]:
        """Read the file (blocking; call it in a thread). A damaged file is logged and ignored."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("cannot read rule timers from %s (%s); starting without them", self.path, exc)
            return {}
        if not isinstance(data, dict) or not isinstance(data.get("timers"), dict):
            log.error("rule timers in %s are not in the expected form; starting without them", self.path)
            return {}
        self.entries = {str(k): v for k, v in data["timers"].items() if isinstance(v, dict)}
        return dict(self.entries)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.entries[key] = entry
        self._dirty.set()

    def remove(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self._dirty.set()

    async def flush_forever(self) -> None:
        """Write the snapshot whenever it changed; until cancelled (then write once more)."""
        try:
            while True:
                await self._dirty.wait()
                await self.flush()
        finally:
            self._write(self._snapshot())  # at shutdown: small, once, and must not be lost

    async def flush(self) -> None:
        self._dirty.clear()
        await asyncio.to_thread(self._write, self._snapshot())

    def _snapshot(self) -> tuple[int, dict[str, dict[str, Any]]]:
        self._sequence += 1
        return self._sequence, dict(self.entries)

    def _write(self, snapshot: tuple[int, dict[str, dict[str, Any]]]) -> None:
        sequence, entries = snapshot
        with self._lock:
            if sequence > self._written:
                self._written = sequence
                self._replace(entries)

    def _replace(self, entries: dict[str, dict[str, Any]]) -> None:
        try:
            write_atomic(self.path, json.dumps({"version": 1, "timers": entries}, indent=1, sort_keys=True).encode())
        except OSError as exc:
            log.error("cannot save rule timers to %s: %s", self.path, exc)
