"""Simulated Modbus devices: pymodbus's own server, which edged polls as it would real ones.

``Peer`` serves a few unit ids, each with its four tables (coils, discrete
inputs, holding and input registers), over TCP on a loopback port or over
RTU on a serial port (one end of a pty pair stands in for an RS-485 bus).
``set`` and ``get`` change and read a unit's memory as its firmware would;
a write from edged lands in the same memory.

``EnergyPlant`` is the plant of ``edged demo``: unit 1 is an energy meter
(float32 CDAB input registers: voltage 0, current 6, power 12, energy 72),
unit 2 a pump relay (coil 0) whose running state shows in its input
register 0; each ``step`` moves the meter's values on.
"""

from __future__ import annotations

import functools
import random
import struct

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

# pymodbus addresses a unit's tables by function code: the one that reads a table and the one that writes it.
FUNCTION_CODES = {"coil": (1, 5), "discrete": (2, 2), "holding": (3, 16), "input": (4, 4)}


class Peer:
    """pymodbus's server with ``units``, each holding ``size`` registers per table and ``coils`` coils.

    Subclasses see every request through ``_trace`` (each PDU, before it is
    answered), ``_action`` (return an exception code to answer with it) and
    ``_packet`` (each RTU frame's bytes).
    """

    def __init__(self, units: tuple[int, ...] = (1,), size: int = 100, coils: int = 100) -> None:
        self.units = units
        self.size = size
        self.coils = coils
        self.port: int | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    def _devices(self) -> list[SimDevice]:
        def tables() -> tuple[list[SimData], ...]:
            return (
                [SimData(0, count=self.coils, values=False, datatype=DataType.BITS)],
                [SimData(0, count=self.size, values=False, datatype=DataType.BITS)],
                [SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)],
            )

        return [
            SimDevice(id=unit, use_bit_addressing=True, simdata=tables(), action=functools.partial(self._action, unit))
            for unit in self.units
        ]

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        return pdu

    def _packet(self, sending: bool, data: bytes) -> bytes:
        return data

    async def _action(
        self, unit: int, function: int, start: int, address: int, count: int, registers: list[int], values: list[int] | None
    ) -> ExcCodes | None:
        return None

    async def start_tcp(self, port: int = 0, framer: FramerType = FramerType.SOCKET) -> int:
        """Listen on 127.0.0.1 (``port`` 0: a free one); returns the port."""
        self._server = ModbusTcpServer(self._devices(), framer=framer, address=("127.0.0.1", port), trace_pdu=self._trace)
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]
        return self.port

    async def start_rtu(self, port: str, baudrate: int = 115200) -> None:
        """Answer RTU frames on the serial port ``port`` (8N1)."""
        self._server = ModbusSerialServer(
            self._devices(), framer=FramerType.RTU, port=port, baudrate=baudrate, parity="N", trace_pdu=self._trace,
            trace_packet=self._packet,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.shutdown()

    async def set(self, unit: int, table: str, address: int, values: list[int] | list[bool]) -> None:
        """Store ``values`` in ``table`` ("coil", "discrete", "holding" or "input") of ``unit`` from ``address`` on."""
        assert self._server is not None
        await self._server.async_setValues(unit, FUNCTION_CODES[table][1], address, values)

    async def get(self, unit: int, table: str, address: int, count: int) -> list[int] | list[bool]:
        """The ``count`` values of ``table`` of ``unit`` from ``address`` on."""
        assert self._server is not None
        return await self._server.async_getValues(unit, FUNCTION_CODES[table][0], address, count)


def registers(fmt: str, *values: object) -> list[int]:
    """The big-endian registers of ``struct.pack(fmt, *values)``."""
    data = struct.pack(fmt, *values)
    return list(struct.unpack(f">{len(data) // 2}H", data))


def float32_cdab(value: float) -> list[int]:
    """A float32 in two registers, low word first (the CDAB order many meters use)."""
    high, low = registers(">f", value)
    return [low, high]


class EnergyPlant:
    """An energy meter (unit 1) and a pump relay (unit 2); the pump's load shows in the meter's power."""

    METER, RELAY = 1, 2

    def __init__(self) -> None:
        self.peer = Peer(units=(self.METER, self.RELAY))
        self.energy_kwh = 1234.5
        self.current = 8.0

    async def start(self, port: int = 0) -> int:
        return await self.peer.start_tcp(port)

    async def step(self, rng: random.Random, dt: float) -> None:
        """Move the meter on by ``dt`` seconds of load."""
        pump_on = bool((await self.peer.get(self.RELAY, "coil", 0, 1))[0])
        self.current = min(30.0, max(2.0, self.current + rng.gauss(0, 0.4))) + (4.0 if pump_on else 0.0) * 0.1
        voltage = 230 + rng.gauss(0, 1.0)
        power = voltage * self.current + (750.0 if pump_on else 0.0)
        self.energy_kwh += power * dt / 3_600_000
        values = [0] * 74
        for address, value in ((0, voltage), (6, self.current), (12, power), (72, self.energy_kwh)):
            values[address : address + 2] = float32_cdab(value)
        await self.peer.set(self.METER, "input", 0, values)
        await self.peer.set(self.RELAY, "input", 0, [int(pump_on)])

    async def stop(self) -> None:
        await self.peer.stop()
