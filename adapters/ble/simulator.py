"""Simulated Bluetooth at bleak's backend seam: an ``Air`` holds peripherals
in range; its scanner and client classes are bleak backends
(``BaseBleakScanner``, ``BaseBleakClient``), so ``BleakScanner``,
``BleakClient`` and bleak-retry-connector run unchanged on top of them.

Peripherals send real frames (BTHome v2 plain and encrypted, RuuviTag
format 5, pvvx custom, iBeacon: built by the functions below, as the
sensors' firmware builds them) and
serve GATT characteristics that can be read, written and notified. Tests
drive the Air directly (``advertise``, ``drop``, ``notify``); ``demo_air()``
is what ``backend: simulated`` runs: sensors that advertise on their own.
"""

from __future__ import annotations

import asyncio
import math
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDeviceNotFoundError, BleakError
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from edged.adapters.ble import atc, ibeacon
from edged.adapters.ble.backend import BleBackend
from edged.adapters.ble.formats import service_uuid
from edged.tasks import TaskSet

SERVICE_UUID = "0000181a-0000-1000-8000-00805f9b34fb"  # Environmental Sensing

# -- frames as sensors send them -------------------------------------------

BTHOME_UUID = service_uuid(0xFCD2)
RUUVI_COMPANY_ID = 0x0499
_BTHOME_V2 = 2 << 5
# BTHome v2 object id -> (bytes, factor, signed), for the objects simulated sensors send
BTHOME_OBJECTS = {
    0x00: (1, 1, False), 0x01: (1, 1, False), 0x02: (2, 0.01, True), 0x03: (2, 0.01, False),
    0x04: (3, 0.01, False), 0x0C: (2, 0.001, False), 0x21: (1, 1, False), 0x45: (2, 0.1, True),
}  # fmt: skip
_RUUVI_5 = struct.Struct(">BhHHhhhHBH6s")


def bthome_objects(values: list[tuple[int, float]], packet_id: int | None = None) -> bytes:
    """BTHome v2 objects carrying ``values`` (object id, value), after a packet id if given."""
    out = bytearray()
    if packet_id is not None:
        out += bytes([0x00, packet_id & 0xFF])
    for object_id, value in values:
        size, factor, signed = BTHOME_OBJECTS[object_id]
        out += bytes([object_id]) + round(value / factor).to_bytes(size, "little", signed=signed)
    return bytes(out)


def bthome_plain(objects: bytes) -> bytes:
    """Unencrypted BTHome v2 service data carrying ``objects``."""
    return bytes([_BTHOME_V2]) + objects


def bthome_encrypted(objects: bytes, address: str, key: bytes, counter: int) -> bytes:
    """BTHome v2 service data carrying ``objects`` encrypted with the bind key ``key`` (AES-CCM,
    nonce = MAC + UUID + device information + counter, 4-byte MIC)."""
    info = _BTHOME_V2 | 0x01
    count = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(address.replace(":", "")) + b"\xd2\xfc" + bytes([info]) + count
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, objects, None)
    return bytes([info]) + sealed[:-4] + count + sealed[-4:]


def ruuvi_format5(temperature: float, humidity: float, pressure: int, acceleration: tuple[float, float, float],
                  battery_mv: int, tx_power: int, movement: int, sequence: int, mac: str) -> bytes:  # fmt: skip
    """A RuuviTag data format 5 frame (the manufacturer data of company 0x0499)."""
    power = ((battery_mv - 1600) << 5) | ((tx_power + 40) // 2)
    ax, ay, az = (round(a * 1000) for a in acceleration)
    return _RUUVI_5.pack(5, round(temperature / 0.005), round(humidity / 0.0025), pressure - 50000, ax, ay, az,
                         power, movement & 0xFF, sequence & 0xFFFF, bytes.fromhex(mac.replace(":", "")))  # fmt: skip


@dataclass
class SimCharacteristic:
    uuid: str
    value: bytes = b""
    properties: tuple[str, ...] = ("read",)
    subscribers: list[NotifyCallback] = field(default_factory=list)


@dataclass
class Peripheral:
    """A simulated device. ``characteristics`` (by 128-bit UUID) make it connectable."""

    address: str
    name: str | None = None
    rssi: int = -60
    characteristics: dict[str, SimCharacteristic] = field(default_factory=dict)
    writes: list[tuple[str, bytes]] = field(default_factory=list)
    on_write: Callable[[str, bytes], None] | None = None

    def add(self, uuid: str, value: bytes = b"", *properties: str) -> SimCharacteristic:
        char = SimCharacteristic(uuid, value, properties or ("read",))
        self.characteristics[uuid] = char
        return char

    def notify(self, uuid: str, value: bytes) -> None:
        char = self.characteristics[uuid]
        char.value = value
        for callback in list(char.subscribers):
            callback(bytearray(value))


class Air:
    """The simulated radio shared by every scanner and client it backs."""

    def __init__(self) -> None:
        self.peripherals: dict[str, Peripheral] = {}
        self.scanners: list[SimulatedScanner] = []
        self.connections: dict[str, SimulatedClient] = {}
        self.available = True  # False: scanners fail to start as without a Bluetooth adapter
        self.refuse: set[str] = set()  # addresses whose connection attempts fail
        self.on_connect: Callable[[str], Any] | None = None  # called with the address of every connection attempt
        self.connects: dict[str, int] = {}  # successful connections per address
        self.max_concurrent = 0  # the most connections open at once
        self.routine: Callable[[Air], Any] | None = None  # coroutine function run while a scanner runs
        self.scanning = asyncio.Event()  # set while a scanner listens
        self._tasks = TaskSet()

    def add(self, peripheral: Peripheral) -> Peripheral:
        self.peripherals[peripheral.address] = peripheral
        return peripheral

    def backend(self) -> BleBackend:
        """bleak backend classes bound to this Air."""
        return BleBackend(
            type("AirScanner", (SimulatedScanner,), {"air": self}),
            type("AirClient", (SimulatedClient,), {"air": self}),
        )

    def advertise(
        self, address: str, *, name: str | None = None, service_data: dict[str, bytes] | None = None,
        manufacturer_data: dict[int, bytes] | None = None, rssi: int | None = None,
    ) -> None:
        """Deliver one advertisement from ``address`` to every running scanner."""
        peripheral = self.peripherals.get(address) or self.add(Peripheral(address, name))
        data = AdvertisementData(
            local_name=name or peripheral.name, manufacturer_data=manufacturer_data or {},
            service_data=service_data or {}, service_uuids=list(service_data or ()), tx_power=None,
            rssi=peripheral.rssi if rssi is None else rssi, platform_data=(),
        )
        for scanner in list(self.scanners):
            scanner.deliver(address, data)

    def drop(self, address: str) -> None:
        """The link to ``address`` breaks (out of range, battery pulled)."""
        client = self.connections.pop(address, None)
        if client is not None:
            client.dropped()

    def notify(self, address: str, uuid: str, value: bytes) -> None:
        self.peripherals[address].notify(uuid, value)

    async def start_routine(self) -> None:
        if self.routine is not None and not len(self._tasks):
            self._tasks.spawn(self.routine(self), name="simulated BLE air")

    async def stop_routine(self) -> None:
        if not self.scanners:
            await self._tasks.close()


class SimulatedScanner(BaseBleakScanner):
    air: Air

    def __init__(self, detection_callback: Any, service_uuids: list[str] | None, scanning_mode: str = "active",
                 **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self.scanning_mode = scanning_mode

    async def start(self) -> None:
        if not self.air.available:
            raise BleakBluetoothNotAvailableError(
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
            )
        self.seen_devices = {}
        self.air.scanners.append(self)
        self.air.scanning.set()
        await self.air.start_routine()

    async def stop(self) -> None:
        if self in self.air.scanners:
            self.air.scanners.remove(self)
        if not self.air.scanners:
            self.air.scanning.clear()
        await self.air.stop_routine()

    def deliver(self, address: str, data: AdvertisementData) -> None:
        if not self.is_allowed_uuid(data.service_uuids):
            return
        device = self.create_or_update_device(address, address, data.local_name, {"simulated": True}, data)
        self.call_detection_callbacks(device, data)


class SimulatedClient(BaseBleakClient):
    air: Air

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=kwargs.get("disconnected_callback"),
            timeout=kwargs.get("timeout", 10.0),
        )
        self._connected = False
        self._peripheral: Peripheral | None = None

    @property
    def mtu_size(self) -> int:
        return 23

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        await asyncio.sleep(0)  # a real connect yields to the loop
        peripheral = self.air.peripherals.get(self.address)
        if peripheral is None or not peripheral.characteristics:
            raise BleakDeviceNotFoundError(self.address, f"Device with address {self.address} was not found.")
        if self.air.on_connect is not None:
            self.air.on_connect(self.address)
        if self.address in self.air.refuse:
            raise BleakError("le-connection-abort-by-local")
        services = BleakGATTServiceCollection()
        service = BleakGATTService(None, 1, SERVICE_UUID)
        services.add_service(service)
        for handle, char in enumerate(peripheral.characteristics.values(), start=2):
            gatt_char = BleakGATTCharacteristic(char, handle, char.uuid, list(char.properties), lambda: 20, service)
            services.add_characteristic(gatt_char)
        self.services = services
        self._peripheral = peripheral
        self._connected = True
        self.air.connections[self.address] = self
        self.air.connects[self.address] = self.air.connects.get(self.address, 0) + 1
        self.air.max_concurrent = max(self.air.max_concurrent, len(self.air.connections))

    async def disconnect(self) -> None:
        self._close()
        if self.air.connections.get(self.address) is self:
            del self.air.connections[self.address]

    def dropped(self) -> None:
        self._close()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    def _close(self) -> None:
        self._connected = False
        if self._peripheral is not None:
            for char in self._peripheral.characteristics.values():
                char.subscribers.clear()

    def _char(self, characteristic: BleakGATTCharacteristic) -> SimCharacteristic:
        if not self._connected or self._peripheral is None:
            raise BleakError("Not connected")
        return characteristic.obj

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        char = self._char(characteristic)
        if "read" not in char.properties:
            raise BleakError(f"characteristic {char.uuid} does not support read")
        return bytearray(char.value)

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
        char = self._char(characteristic)
        if not {"write", "write-without-response"} & set(char.properties):
            raise BleakError(f"characteristic {char.uuid} does not support write")
        assert self._peripheral is not None
        char.value = bytes(data)
        self._peripheral.writes.append((char.uuid, bytes(data)))
        if self._peripheral.on_write is not None:
            self._peripheral.on_write(char.uuid, bytes(data))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        char = self._char(characteristic)
        if "notify" not in char.properties:
            raise BleakError(f"characteristic {char.uuid} does not support notify")
        char.subscribers.append(callback)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        char = self._char(characteristic)
        char.subscribers.clear()

    async def read_gatt_descriptor(self, descriptor: Any, *, use_cached: bool = False, **kwargs: Any) -> bytearray:
        raise BleakError("descriptors are not simulated")

    async def write_gatt_descriptor(self, descriptor: Any, data: Any) -> None:
        raise BleakError("descriptors are not simulated")

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("pairing is not simulated")

    async def unpair(self) -> None:
        raise BleakError("pairing is not simulated")


# -- the demo: what ``backend: simulated`` shows ---------------------------

DEMO_BTHOME = "A4:C1:38:00:00:01"  # a BTHome v2 temperature/humidity sensor
DEMO_BTHOME_ENCRYPTED = "A4:C1:38:00:00:02"  # the same, encrypted with DEMO_BIND_KEY
DEMO_BIND_KEY = "231d39c1d7cc1ab1aee224cd096db932"
DEMO_RUUVI = "CB:B8:33:4C:88:4F"
DEMO_ATC = "A4:C1:38:CF:01:56"  # a Xiaomi thermometer on pvvx's custom firmware, in another room
DEMO_BEACON = "F0:00:00:00:00:03"
DEMO_BEACON_UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
DEMO_GATT = "F0:00:00:00:00:10"  # a thermostat with a GATT service
DEMO_TEMPERATURE_UUID = "00002a6e-0000-1000-8000-00805f9b34fb"  # int16 LE, 0.01 Cel, notify
DEMO_SETPOINT_UUID = "0000ff01-0000-1000-8000-00805f9b34fb"  # int16 LE, 0.01 Cel, read/write


def demo_air(interval: float = 2.0, seed: int | None = None) -> Air:
    """An Air with the demo devices, advertising every ``interval`` seconds once scanned."""
    air = Air()
    air.add(Peripheral(DEMO_BTHOME, "SBHT-003C"))
    air.add(Peripheral(DEMO_BTHOME_ENCRYPTED, "ATC_000002"))
    air.add(Peripheral(DEMO_RUUVI, "Ruuvi 884F"))
    air.add(Peripheral(DEMO_ATC, "ATC_CF0156"))
    thermostat = air.add(Peripheral(DEMO_GATT, "edged-thermostat"))
    thermostat.add(DEMO_TEMPERATURE_UUID, (2000).to_bytes(2, "little", signed=True), "read", "notify")
    thermostat.add(DEMO_SETPOINT_UUID, (2100).to_bytes(2, "little", signed=True), "read", "write")
    air.routine = lambda air: _demo_routine(air, interval, random.Random(seed))
    return air


async def _demo_routine(air: Air, interval: float, rng: random.Random) -> None:
    key = bytes.fromhex(DEMO_BIND_KEY)
    thermostat = air.peripherals[DEMO_GATT]
    step = 0
    while True:
        t = time.time()
        temperature = 21.0 + 2.0 * math.sin(t / 600) + rng.gauss(0, 0.05)
        humidity = 45.0 + 5.0 * math.cos(t / 900) + rng.gauss(0, 0.2)
        objects = bthome_objects([(0x01, 87), (0x02, temperature), (0x03, humidity)], packet_id=step)
        air.advertise(DEMO_BTHOME, service_data={BTHOME_UUID: bthome_plain(objects)})
        air.advertise(DEMO_BTHOME_ENCRYPTED, service_data={
            BTHOME_UUID: bthome_encrypted(objects, DEMO_BTHOME_ENCRYPTED, key, counter=step + 1)})
        frame = ruuvi_format5(temperature - 1.5, humidity + 3, 100_500 + rng.randint(-30, 30), (0.0, 0.0, 1.0),
                              2950, 4, step // 10, step, DEMO_RUUVI)
        air.advertise(DEMO_RUUVI, manufacturer_data={RUUVI_COMPANY_ID: frame})
        bedroom = atc.encode_pvvx(DEMO_ATC, temperature - 2.2, humidity + 6, 3012, 74, step // 5)
        air.advertise(DEMO_ATC, service_data={atc.UUID: bedroom})
        beacon = ibeacon.IBeacon(DEMO_BEACON_UUID, 1, 2, -59)
        air.advertise(DEMO_BEACON, manufacturer_data={ibeacon.COMPANY_ID: ibeacon.encode(beacon)},
                      rssi=-65 + rng.randint(-5, 5))
        air.advertise(DEMO_GATT, name="edged-thermostat")
        setpoint = int.from_bytes(thermostat.characteristics[DEMO_SETPOINT_UUID].value, "little", signed=True)
        current = int.from_bytes(thermostat.characteristics[DEMO_TEMPERATURE_UUID].value, "little", signed=True)
        current += max(-10, min(10, setpoint - current)) + rng.randint(-2, 2)
        if DEMO_GATT in air.connections:
            thermostat.notify(DEMO_TEMPERATURE_UUID, current.to_bytes(2, "little", signed=True))
        else:
            thermostat.characteristics[DEMO_TEMPERATURE_UUID].value = current.to_bytes(2, "little", signed=True)
        step += 1
        await asyncio.sleep(interval)


