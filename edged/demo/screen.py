"""The demo's live view: every device's values, each uplink, recent rule firings and log lines.

On a terminal the view is redrawn in place (the cursor goes back up over the
previous one and clears it), so the scroll-back keeps only the last; log
lines are shown under the view instead of scrolling it away. Piped to a file
or another program, each view is printed after the previous one, as plain
lines.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from typing import TextIO

from edged.view import GatewayView

FIRINGS = 5  # rule firings shown
LOG_LINES = 6  # log lines shown under the view on a terminal


class Screen:
    """Draws views on ``stream``; on a terminal each replaces the one before."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._height = 0  # lines of the view on screen
        self.log = collections.deque[str](maxlen=LOG_LINES)
        self.unshown = collections.deque[str](maxlen=200)  # log lines that came after the last view was drawn

    def draw(self, lines: list[str]) -> None:
        if not self.tty:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
            return
        width = shutil.get_terminal_size().columns
        shown = [line[: width - 1] for line in [*lines, *(["-- log --", *self.log] if self.log else [])]]
        back = f"\x1b[{self._height}F" if self._height else ""
        self.stream.write(back + "\x1b[J" + "\n".join(shown) + "\n")
        self.stream.flush()
        self._height = len(shown)
        self.unshown.clear()

    @contextlib.contextmanager
    def showing_logs(self) -> Iterator[None]:
        """On a terminal, show log lines under the view rather than between views, for the
        length of the block; then they go where they went before."""
        if not self.tty:
            yield
            return
        root = logging.getLogger()
        handlers = list(root.handlers)
        kept = _Kept(self)
        for old in handlers:
            kept.setFormatter(old.formatter)
            kept.setLevel(old.level)
            root.removeHandler(old)
        root.addHandler(kept)
        try:
            yield
        finally:
            root.removeHandler(kept)
            for old in handlers:
                root.addHandler(old)
            if self.unshown:  # what was logged since the last view, the shutdown's lines above all
                self.stream.write("\n".join(self.unshown) + "\n")
                self.stream.flush()


class _Kept(logging.Handler):
    """Keeps log lines for the screen to show under its view."""

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record).splitlines()[0]
        self.screen.log.append(line)
        self.screen.unshown.append(line)


def view_lines(view: GatewayView) -> list[str]:
    """The live view: a line per device (its first values), each uplink, the last rule firings."""
    lines = [f"-- live values, {time.strftime('%H:%M:%S')} --"]
    for device in sorted(list(view.hub.devices.values()), key=lambda d: d.id):
        values = []
        for key, point in device.points.items():
            reading = view.hub.value(device.id, key)
            if reading is None:
                continue
            value = f"{reading.value:.4g}" if isinstance(reading.value, float) else str(reading.value)
            values.append(f"{key}={value}{(' ' + point.unit) if point.unit else ''}")
        state = "online " if device.online else "OFFLINE"
        lines.append(f"  {device.id:<36} {state} {', '.join(values[:6])}")
    if view.uplink is not None:
        for service in view.uplink.services.values():
            stats = service.stats()
            state = "connected" if stats.connected else "not connected"
            lines.append(f"  {service.title} {state}; outbox: {stats.waiting} readings waiting, {stats.acked} delivered")
    if view.rules is not None:
        recent = view.rules.stats().recent[-FIRINGS:]
        if recent:
            lines.append("-- rule firings --")
            for firing in reversed(recent):
                when = time.strftime("%H:%M:%S", time.localtime(firing.get("ts", 0)))
                lines.append(f"  {when} {firing.get('rule_id', '')}: {firing.get('outcome', '')}")
    return lines
