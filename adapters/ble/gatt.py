"""GATT devices: one ``GattLink`` per configured device keeps a connection
open through bleak-retry-connector, reads characteristics at their
intervals, subscribes to notifications and carries out writes.

A link waits until the scanner has seen its device, takes one of the
adapter's connection slots (a semaphore: Bluetooth adapters hold only a few
connections), and holds it while connected. A drop, or a failure to
connect, is the device's problem until it is connected again, and is retried through ``edged.backoff.retry_forever``; one device's
trouble never blocks the scanner or the other links.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from edged.adapters.ble import codec
from edged.adapters.ble.config import Characteristic, GattDevice
from edged.backoff import Backoff, retry_forever
from edged.errors import CommandError, DeviceError
from edged.model import Point, Quality, Reading, Value
from edged.tasks import TaskSet

# What a GATT operation can raise: bleak's errors, timeouts, and the D-Bus
# socket breaking under it.
GATT_ERRORS = (BleakError, TimeoutError, OSError, EOFError)


class Sightings:
    """The latest ``BLEDevice`` the scanner saw per address, and waiting for one."""

    def __init__(self) -> None:
        self._devices: dict[str, BLEDevice] = {}
        self._waiters: dict[str, asyncio.Event] = {}

    def saw(self, device: BLEDevice, address: str) -> None:
        self._devices[address] = device
        event = self._waiters.get(address)
        if event is not None:
            event.set()

    def latest(self, address: str) -> BLEDevice | None:
        return self._devices.get(address)

    async def wait(self, address: str) -> BLEDevice:
        while (device := self._devices.get(address)) is None:
            event = self._waiters.setdefault(address, asyncio.Event())
            await event.wait()
            self._waiters.pop(address, None)
        return device


def points(spec: GattDevice) -> dict[str, Point]:
    return {
        c.key: Point(c.key, codec.value_type(c.decoder, c.scale), c.unit, c.writable)
        for c in spec.characteristics
    }


class GattLink:
    def __init__(
        self,
        spec: GattDevice,
        device_id: str,
        sightings: Sightings,
        slots: asyncio.Semaphore,
        publish: Callable[[Sequence[Reading]], None],
        set_online: Callable[[str, bool], None],
        log: logging.Logger,
        client_backend: type[BaseBleakClient] | None = None,
        connect_attempts: int = 3,
        reconnect_max: float = 60.0,
        on_failure: Callable[[], None] | None = None,
        problem: Callable[[str, str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.device_id = device_id
        self.address = spec.address
        self._sightings = sightings
        self._slots = slots
        self._publish = publish
        self._set_online = set_online
        self.log = log
        self._client_backend = client_backend
        self._attempts = connect_attempts
        self._reconnect_max = reconnect_max
        self._on_failure = on_failure
        self._problem = problem
        self._chars = {c.key: c for c in spec.characteristics}
        self._client: BleakClient | None = None
        self._lost = asyncio.Event()
        self.connections = 0  # successful connections so far
        self.failures = 0  # lost or failed connections so far

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def run(self) -> None:
        """Stay connected until cancelled."""
        await retry_forever(
            f"BLE device {self.device_id} ({self.address})", self._session, self.log,
            Backoff(initial=1.0, maximum=self._reconnect_max), on_failure=self._failed, healthy_after=30.0,
        )

    def _failed(self, exc: BaseException) -> None:
        """A connection failed or dropped: the device's problem says why (``cannot connect: ...``)."""
        self.failures += 1
        if self._problem is not None:
            self._problem(self.device_id, str(exc).removeprefix(f"{self.device_id}: "))
        if self._on_failure is not None:
            self._on_failure()

    async def _session(self) -> None:
        device = await self._sightings.wait(self.address)
        async with self._slots, self._connection(device) as client:
            await self._serve(client)

    @contextlib.asynccontextmanager
    async def _connection(self, device: BLEDevice) -> AsyncIterator[BleakClient]:
        self._lost = asyncio.Event()
        try:
            client = await establish_connection(
                BleakClient, device, self.device_id,
                disconnected_callback=self._on_disconnect,
                max_attempts=self._attempts,
                ble_device_callback=lambda: self._sightings.latest(self.address) or device,
                backend=self._client_backend,
            )
        except GATT_ERRORS as exc:
            detail = str(exc).removeprefix(f"{self.device_id} - {device.address}: ")  # bleak-retry-connector's words
            raise DeviceError(self.device_id, f"cannot connect: {detail}") from exc
        self._client = client
        self.connections += 1
        try:
            yield client
        finally:
            self._client = None
            self._set_online(self.device_id, False)
            with contextlib.suppress(*GATT_ERRORS):
                async with asyncio.timeout(10.0):
                    await client.disconnect()

    def _on_disconnect(self, client: BleakClient) -> None:
        self._lost.set()

    async def _serve(self, client: BleakClient) -> None:
        """Subscribe and poll until the link drops; then raise ``DeviceError``."""
        try:
            for char in self._chars.values():
                if char.notify:
                    await client.start_notify(char.uuid, partial(self._on_notify, char))
        except GATT_ERRORS as exc:
            raise DeviceError(self.device_id, f"cannot subscribe: {exc}") from exc
        self._set_online(self.device_id, True)
        self.log.info("connected to %s (%s)", self.device_id, self.address, extra={"device": self.device_id})
        groups: dict[float, list[Characteristic]] = defaultdict(list)
        for char in self._chars.values():
            if char.interval:
                groups[char.interval].append(char)
        pollers = TaskSet()
        for interval, chars in groups.items():
            pollers.spawn(self._poll(client, interval, chars), name=f"{self.device_id} poll {interval:g}s")
        try:
            await self._lost.wait()
        finally:
            await pollers.close()
        raise DeviceError(self.device_id, "disconnected")

    def _on_notify(self, char: Characteristic, sender: BleakGATTCharacteristic, data: bytearray) -> None:
        self._publish([self._reading(char, bytes(data), time.time())])

    async def _poll(self, client: BleakClient, interval: float, chars: list[Characteristic]) -> None:
        while True:
            now = time.time()
            batch = []
            for char in chars:
                try:
                    data = await client.read_gatt_char(char.uuid)
                except GATT_ERRORS as exc:
                    if not client.is_connected:
                        self._lost.set()
                        return
                    self.log.warning("%s: reading %s failed: %s", self.device_id, char.key, exc,
                                     extra={"device": self.device_id})
                    batch.append(Reading(self.device_id, char.key, None, now, Quality.BAD))
                    continue
                batch.append(self._reading(char, bytes(data), now))
            self._publish(batch)
            await asyncio.sleep(interval)

    def _reading(self, char: Characteristic, data: bytes, now: float) -> Reading:
        try:
            value = codec.decode(char.decoder, data, char.scale)
        except ValueError as exc:
            self.log.warning("%s: %s: %s", self.device_id, char.key, exc, extra={"device": self.device_id})
            return Reading(self.device_id, char.key, None, now, Quality.BAD)
        return Reading(self.device_id, char.key, value, now)

    async def write(self, key: str, value: Value) -> None:
        """Write ``value`` to the characteristic of ``key``; raise ``CommandError`` if it is not done."""
        char = self._chars.get(key)
        if char is None or not char.writable:
            raise CommandError(f"{self.device_id}.{key} is not a writable characteristic")
        client = self._client
        if client is None or not client.is_connected:
            raise CommandError(f"{self.device_id} is not connected")
        try:
            data = codec.encode(char.decoder, value, char.scale)
        except ValueError as exc:
            raise CommandError(f"{self.device_id}.{key}: {exc}") from exc
        try:
            await client.write_gatt_char(char.uuid, data, response=char.write_response)
        except GATT_ERRORS as exc:
            raise CommandError(f"{self.device_id}.{key}: write failed: {exc}") from exc
        self._publish([self._reading(char, data, time.time())])
