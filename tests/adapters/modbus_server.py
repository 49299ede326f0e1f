"""pymodbus's own server as the peer of the Modbus adapter tests.

``Server`` runs a ``ModbusTcpServer`` (on a free loopback port) or a
``ModbusSerialServer`` (on one end of a socat pty pair) with a few unit ids,
each with its four tables, records every request it receives (unit,
function code, address, count) through pymodbus's ``trace_pdu`` hook, and
can be told to answer one unit with an exception response, to lack some
addresses (illegal data address for any read that covers them), to hold a
request until released (a slow device), or (RTU) to break the CRC of its
answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import struct
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

SIZE = 1000  # registers per table, and discrete inputs
COILS = 2200


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    unit: int
    function: int
    address: int
    count: int


FC = {"coil": (1, 5), "discrete": (2, 2), "holding": (3, 16), "input": (4, 4)}


class Server:
    def __init__(self, units: tuple[int, ...] = (1, 2, 3)) -> None:
        self.units = units
        self.requests: list[Request] = []
        self.failing: dict[int, ExcCodes] = {}  # unit -> exception code to answer every request with
        self.holes: dict[int, set[int]] = {}  # unit -> register addresses it does not have (illegal data address)
        self.corrupt = False  # RTU: send every answer with a broken CRC
        self.hold: asyncio.Event | None = None  # when set: reads wait here until the event is set
        self.holding_now = asyncio.Event()  # set while a read is held
        self.on_request: Callable[[], None] = lambda: None  # e.g. ``watch.poke``, to wait on requests
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self.port: int | None = None

    def _devices(self) -> list[SimDevice]:
        def tables() -> tuple[list[SimData], ...]:
            # Coils up to 2200, past one 2000-bit read; pymodbus builds its bit tables slowly, so no more.
            coils = [SimData(0, count=COILS, values=False, datatype=DataType.BITS)]
            regs = [SimData(0, count=SIZE, values=0, datatype=DataType.REGISTERS)]
            return (coils, [SimData(0, count=SIZE, values=False, datatype=DataType.BITS)], regs,
                    [SimData(0, count=SIZE, values=0, datatype=DataType.REGISTERS)])

        return [
            SimDevice(id=unit, use_bit_addressing=True, simdata=tables(), action=functools.partial(self._action, unit))
            for unit in self.units
        ]

    def _packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.corrupt:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append(Request(pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
            self.on_request()
        return pdu

    async def _action(self, unit, function, start, address, count, registers, values) -> ExcCodes | None:
        if unit in self.failing:
            return self.failing[unit]
        if not self.holes.get(unit, set()).isdisjoint(range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        if self.hold is not None and values is None:
            self.holding_now.set()
            await self.hold.wait()
            self.holding_now.clear()
        return None

    async def start_tcp(self, port: int = 0, framer: FramerType = FramerType.SOCKET) -> int:
        self._server = ModbusTcpServer(self._devices(), framer=framer, address=("127.0.0.1", port), trace_pdu=self._trace)
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]
        return self.port

    async def start_rtu(self, port: str, baudrate: int = 115200) -> None:
        self._server = ModbusSerialServer(
            self._devices(), framer=FramerType.RTU, port=port, baudrate=baudrate, parity="N", trace_pdu=self._trace,
            trace_packet=self._packet,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    # -- the device's memory ---------------------------------------------

    async def set(self, unit: int, table: str, address: int, values: list[int] | list[bool]) -> None:
        assert self._server is not None
        await self._server.async_setValues(unit, FC[table][1], address, values)

    async def get(self, unit: int, table: str, address: int, count: int) -> list[int] | list[bool]:
        assert self._server is not None
        return await self._server.async_getValues(unit, FC[table][0], address, count)

    def reads(self, unit: int | None = None) -> list[Request]:
        return [r for r in self.requests if r.function in (1, 2, 3, 4) and (unit is None or r.unit == unit)]


def registers(fmt: str, *values: object) -> list[int]:
    """The big-endian registers of ``struct.pack(fmt, *values)``."""
    data = struct.pack(fmt, *values)
    return list(struct.unpack(f">{len(data) // 2}H", data))
