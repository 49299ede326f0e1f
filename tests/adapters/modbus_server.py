"""The Modbus adapter tests' peer: the simulated device with a record of requests and faults to inject.

``Server`` is ``edged.adapters.modbus.simulator.Peer`` (pymodbus's own
server, TCP on a free loopback port or RTU on one end of a socat pty pair)
with large tables; it records every request it receives (unit, function
code, address, count) and can be told to answer one unit with an exception
response, to leave one unit's requests unanswered, to lack some addresses (illegal data address for any read that
covers them), to hold a request until released (a slow device), or (RTU) to
break the CRC of its answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU

from edged.adapters.modbus.simulator import Peer

SIZE = 1000  # registers per table, and discrete inputs
COILS = 2200  # past one 2000-bit read; pymodbus builds its bit tables slowly, so no more


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    unit: int
    function: int
    address: int
    count: int


class Server(Peer):
    def __init__(self, units: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__(units, size=SIZE, coils=COILS)
        self.requests: list[Request] = []
        self.failing: dict[int, ExcCodes] = {}  # unit -> exception code to answer every request with
        self.silent: set[int] = set()  # units whose requests are never answered (a dead device on the line)
        self.holes: dict[int, set[int]] = {}  # unit -> register addresses it does not have (illegal data address)
        self.corrupt = False  # RTU: send every answer with a broken CRC
        self.hold: asyncio.Event | None = None  # when set: reads wait here until the event is set
        self.holding_now = asyncio.Event()  # set while a read is held
        self.on_request: Callable[[], None] = lambda: None  # e.g. ``watch.poke``, to wait on requests

    def _packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self.corrupt:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        if not sending:
            self.requests.append(Request(pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
            self.on_request()
            if pdu.dev_id in self.silent:
                return None  # pymodbus's server answers no request its trace takes away
        return pdu

    async def _action(
        self, unit: int, function: int, start: int, address: int, count: int, registers: list[int], values: list[int] | None
    ) -> ExcCodes | None:
        if unit in self.failing:
            return self.failing[unit]
        if not self.holes.get(unit, set()).isdisjoint(range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        if self.hold is not None and values is None:
            self.holding_now.set()
            await self.hold.wait()
            self.holding_now.clear()
        return None

    def reads(self, unit: int | None = None) -> list[Request]:
        return [r for r in self.requests if r.function in (1, 2, 3, 4) and (unit is None or r.unit == unit)]
