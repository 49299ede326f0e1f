"""Which bleak backend classes the adapter uses.

bleak picks its platform backend (BlueZ on Linux) unless a ``backend=`` class
is passed to ``BleakScanner`` and ``BleakClient``. The adapter takes a
``BleBackend`` and passes its classes through, so the simulator and tests
plug in at bleak's own seam while every line of edged's BLE code runs as it
does against BlueZ. ``None`` means bleak's platform default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner


class BleBackend(NamedTuple):
    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
