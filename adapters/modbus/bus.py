"""One bus, one master: a Modbus connection and the arbitration of its requests.

A ``Bus`` owns one pymodbus client (TCP or RTU). At most one request is in
flight on it at any time; waiting requests are served by priority, so a
write (``WRITE``) goes ahead of every poll read (``POLL``) that is queued,
and reaches the device between two reads of a long poll cycle instead of
after the cycle. ``run()`` keeps the connection up, reconnecting through
``edged.backoff``. pymodbus errors become ``edged`` errors here:
``DeviceError`` when one device failed to answer properly, ``AdapterError``
when the connection is down.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from edged.adapters.modbus.config import RtuConnection, Table, TcpConnection
from edged.backoff import Backoff, retry_forever
from edged.errors import AdapterError, DeviceError

WRITE = 0
POLL = 1

_READ = {
    Table.COIL: "read_coils",
    Table.DISCRETE: "read_discrete_inputs",
    Table.HOLDING: "read_holding_registers",
    Table.INPUT: "read_input_registers",
}


# The exception codes by the names the Modbus specification gives them.
EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class RequestFailed(DeviceError):
    """One request to one unit failed: ``request`` says which (``read holding 0+2``), ``reason``
    how, in a few words (``no answer within 0.5 s``)."""

    def __init__(self, unit: int, request: str, reason: str) -> None:
        self.unit = unit
        self.request = request
        self.reason = reason
        super().__init__(f"unit {unit}", f"{request}: {reason}")


class ExceptionResponse(RequestFailed):
    """The device answered with a Modbus exception; ``code`` is its ``ExcCodes`` value."""

    def __init__(self, unit: int, code: int, request: str) -> None:
        self.code = code
        super().__init__(unit, request, f"exception {code}: {EXCEPTIONS.get(code, 'unknown')}")


class NoAnswer(RequestFailed):
    """The device did not answer in time (or only with frames that could not be read)."""


def describe(connection: TcpConnection | RtuConnection) -> str:
    if isinstance(connection, TcpConnection):
        scheme = "tcp" if connection.framing == "socket" else "rtu-over-tcp"
        return f"{scheme}://{connection.host}:{connection.port}"
    return f"rtu:{connection.port}"


class Bus:
    def __init__(
        self, connection: TcpConnection | RtuConnection, log: logging.Logger, on_lost: Callable[[], None] | None = None,
        on_problem: Callable[[str | None], None] | None = None,
    ) -> None:
        self.connection = connection
        self.on_lost = on_lost  # called when an established connection is lost
        self.on_problem = on_problem  # called with why the connection failed, and with None once it is up
        self.name = describe(connection)
        self.log = log
        self.on_queue: Callable[[], None] | None = None  # called when a request has to wait its turn
        self._lost = asyncio.Event()
        self._up = asyncio.Event()
        self._busy = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._client = self._make_client()

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        c = self.connection
        # reconnect_delay=0: pymodbus must not reconnect on its own; run() does, with our backoff.
        common: dict[str, Any] = {
            "timeout": c.timeout, "retries": c.retries, "reconnect_delay": 0, "trace_connect": self._traced,
        }
        if isinstance(c, TcpConnection):
            framer = FramerType.RTU if c.framing == "rtu" else FramerType.SOCKET
            return AsyncModbusTcpClient(c.host, port=c.port, framer=framer, **common)
        return AsyncModbusSerialClient(
            c.port, baudrate=c.baudrate, bytesize=c.bytesize, parity=c.parity, stopbits=c.stopbits,
            handle_local_echo=c.handle_local_echo, **common,
        )

    @property
    def connected(self) -> bool:
        return self._client.connected

    # -- connection ------------------------------------------------------

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the connection; say whether it is up."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    async def run(self, backoff: Backoff | None = None) -> None:
        """Connect and stay connected until cancelled; always close at the end."""
        try:
            await retry_forever(self.name, self._session, self.log, backoff or Backoff(initial=0.5, maximum=30.0),
                                on_failure=self._failed)  # fmt: skip
        finally:
            self.close()

    async def _session(self) -> None:
        self._lost.clear()
        if not await self._client.connect():
            raise AdapterError(f"cannot connect to {self.name}")
        self._apply_rs485()
        self.log.info("connected to %s", self.name)
        if self.on_problem is not None:
            self.on_problem(None)
        self._up.set()
        try:
            await self._lost.wait()
        finally:
            self._up.clear()
        if self.on_lost is not None:
            self.on_lost()
        self._client.close()
        raise AdapterError(f"connection to {self.name} lost")

    def _failed(self, exc: BaseException) -> None:
        if self.on_problem is not None:
            self.on_problem(str(exc) or type(exc).__name__)

    def _traced(self, connected: bool) -> None:
        if not connected:
            self._lost.set()

    def _apply_rs485(self) -> None:
        c = self.connection
        if not isinstance(c, RtuConnection) or c.rs485 is None or not c.rs485.enabled:
            return
        import serial.rs485

        port = getattr(self._client.ctx.transport, "sync_serial", None)
        if port is None:
            raise AdapterError(f"{self.name}: the serial port does not offer RS-485 settings")
        try:
            port.rs485_mode = serial.rs485.RS485Settings(
                rts_level_for_tx=c.rs485.rts_level_for_tx,
                rts_level_for_rx=c.rs485.rts_level_for_rx,
                delay_before_tx=c.rs485.delay_before_tx,
                delay_before_rx=c.rs485.delay_before_rx,
            )
        except (OSError, ValueError) as exc:
            self._client.close()
            raise AdapterError(f"{self.name}: cannot enable RS-485 mode: {exc}") from exc

    def close(self) -> None:
        """Close the connection; never raises."""
        try:
            self._client.close()
        except Exception:  # closing must not fail the caller
            self.log.debug("closing %s failed", self.name, exc_info=True)

    # -- arbitration -----------------------------------------------------

    @property
    def busy(self) -> bool:
        """A request has the turn (after a request ends: the turn went on to a waiting one)."""
        return self._busy

    @property
    def queued(self) -> int:
        """Requests waiting for their turn."""
        return sum(1 for waiter in self._waiters if not waiter[2].done())

    async def _acquire(self, priority: int) -> None:
        if not self._busy and not self._waiters:
            self._busy = True
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        if self.on_queue is not None:
            self.on_queue()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # the turn was handed to us as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiters:
            future = heapq.heappop(self._waiters)[2]
            if not future.done():
                future.set_result(None)  # the turn passes on; _busy stays set
                return
        self._busy = False

    async def _call(self, priority: int, unit: int, what: str, request: Callable[[], Awaitable[Any]]) -> Any:
        await self._acquire(priority)
        try:
            if not self._client.connected:
                raise AdapterError(f"{self.name} is not connected")
            try:
                response = await request()
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Python 3.11's wait_for (inside pymodbus) can swallow a cancellation that races the answer.
                    raise asyncio.CancelledError
            except ConnectionException as exc:
                raise AdapterError(f"{self.name} is not connected") from exc
            except ModbusIOException as exc:
                raise NoAnswer(unit, what, f"no answer within {self.connection.timeout:g} s") from exc
            except ModbusException as exc:
                raise RequestFailed(unit, what, str(exc)) from exc
        finally:
            self._release()
        if response.isError():
            raise ExceptionResponse(unit, getattr(response, "exception_code", 0), what)
        return response

    # -- requests --------------------------------------------------------

    async def read(self, table: Table, unit: int, address: int, count: int, priority: int = POLL) -> list[Any]:
        """Read ``count`` registers (ints) or bits (bools) of ``table``."""
        method = getattr(self._client, _READ[table])
        response = await self._call(
            priority, unit, f"read {table.value} {address}+{count}",
            lambda: method(address, count=count, device_id=unit),
        )
        return response.bits if table.is_bits else response.registers

    async def write_registers(self, unit: int, address: int, values: list[int], multiple: bool = False) -> None:
        """Write holding registers: FC 6 for one register (unless ``multiple``), FC 16 otherwise."""
        if len(values) == 1 and not multiple:
            await self._call(WRITE, unit, f"write register {address}",
                             lambda: self._client.write_register(address, values[0], device_id=unit))
        else:
            await self._call(WRITE, unit, f"write registers {address}+{len(values)}",
                             lambda: self._client.write_registers(address, values, device_id=unit))

    async def write_coil(self, unit: int, address: int, value: bool, multiple: bool = False) -> None:
        """Write one coil: FC 5 (or FC 15 when ``multiple``)."""
        if multiple:
            await self._call(WRITE, unit, f"write coils {address}",
                             lambda: self._client.write_coils(address, [value], device_id=unit))
        else:
            await self._call(WRITE, unit, f"write coil {address}",
                             lambda: self._client.write_coil(address, value, device_id=unit))
