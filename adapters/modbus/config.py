"""Configuration of the Modbus adapter (pydantic only; no protocol imports).

One adapter instance holds connections (Modbus TCP or RTU over a serial
line); each connection holds devices (unit ids); each device holds a
register map of points::

    - type: modbus
      name: plant
      connections:
        - transport: tcp
          host: 127.0.0.1
          port: 5020
          devices:
            - id: meter
              unit_id: 1
              interval: 5s
              points:
                - {key: voltage, table: input, address: 0, type: float32, order: CDAB, unit: V}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator
from pydantic.dataclasses import dataclass

from edged.adapter import AdapterConfig
from edged.fields import DeclaredDevice, Duration, Key, Model, distinct, unique


class Table(StrEnum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bits(self) -> bool:
        return self in (Table.COIL, Table.DISCRETE)


class DataType(StrEnum):
    BOOL = "bool"
    BIT = "bit"  # one bit of a holding or input register
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


# Registers a value of each type occupies (string: its ``length``).
WIDTH = {
    DataType.BIT: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}


class Order(StrEnum):
    """Byte and word order of a multi-byte value, naming the value's bytes
    A (most significant) to D as they arrive on the wire."""

    ABCD = "ABCD"  # big-endian words, most significant word first (the Modbus default)
    CDAB = "CDAB"  # big-endian words, least significant word first ("word swap")
    BADC = "BADC"  # bytes swapped within each word, most significant word first
    DCBA = "DCBA"  # little-endian throughout


@dataclass(frozen=True, slots=True, kw_only=True, config=ConfigDict(extra="forbid"))
class PointConfig:
    """One value of a device, mapped onto its registers or bits.

    A slotted dataclass, not a model: a gateway may configure tens of
    thousands of points, and a model's attribute dictionary would cost each
    of them several hundred bytes for as long as the gateway runs."""

    key: Key
    name: str | None = None
    table: Table = Table.HOLDING
    address: int = Field(ge=0, le=65535)
    type: DataType | None = None  # default: bool for coils and discrete inputs, uint16 for registers
    bit: int | None = Field(None, ge=0, le=15)  # for type bit: 0 is the least significant bit
    length: int | None = Field(None, ge=1, le=125)  # for type string: registers it spans
    encoding: str = "ascii"  # for type string
    order: Order = Order.ABCD
    scale: float = 1.0
    offset: float = 0.0
    decimals: int | None = Field(None, ge=0, le=15)  # round reported values (default: as fine as scale and offset)
    unit: str | None = None
    writable: bool = False
    deadband: float | None = Field(None, ge=0)
    max_interval: Duration | None = Field(None, gt=0)  # default: the device's
    group: str | None = None  # poll group of the device; default: the device's own interval

    @model_validator(mode="after")
    def _check(self) -> PointConfig:
        kind = self.data_type
        if self.table.is_bits and kind is not DataType.BOOL:
            raise ValueError(f"{self.table.value} points are type bool; got {kind.value}:")
        if not self.table.is_bits and kind is DataType.BOOL:
            raise ValueError(f"a {self.table.value} register holds a number; for one of its bits use type: bit:")
        if kind is DataType.BIT and self.bit is None:
            raise ValueError("type bit needs bit: 0-15:")
        if kind is not DataType.BIT and self.bit is not None:
            raise ValueError("bit: is only for type bit:")
        if kind is DataType.STRING and self.length is None:
            raise ValueError("type string needs length: the number of registers (2 characters each):")
        if kind is not DataType.STRING and self.length is not None:
            raise ValueError("length: is only for type string:")
        if self.writable and self.table not in (Table.HOLDING, Table.COIL):
            raise ValueError(f"{self.table.value} points are read-only; only holding registers and coils are writable:")
        if self.writable and kind is DataType.BIT:
            raise ValueError("bit points are read-only (writing one bit of a register is not atomic over FC 6/16):")
        if kind is DataType.STRING and self.order not in (Order.ABCD, Order.BADC):
            raise ValueError("strings take order ABCD (first character in the high byte) or BADC (in the low byte):")
        if self.scale == 0:
            raise ValueError("scale cannot be 0:")
        if kind in (DataType.BOOL, DataType.BIT, DataType.STRING) and (self.scale != 1 or self.offset != 0):
            raise ValueError(f"scale and offset apply to numbers, not to type {kind.value}:")
        if kind in (DataType.BOOL, DataType.BIT, DataType.STRING) and self.deadband is not None:
            raise ValueError(f"deadband applies to numbers, not to type {kind.value}:")
        if self.address + self.width > 65536:
            raise ValueError(f"address {self.address} + {self.width} registers runs past 65535:")
        return self

    @property
    def data_type(self) -> DataType:
        if self.type is not None:
            return self.type
        return DataType.BOOL if self.table.is_bits else DataType.UINT16

    @property
    def width(self) -> int:
        """Registers (or bits, for coils and discrete inputs) the point spans."""
        kind = self.data_type
        if kind is DataType.BOOL:
            return 1
        if kind is DataType.STRING:
            return self.length or 1
        return WIDTH[kind]


class DeviceConfig(DeclaredDevice):
    """One Modbus device (unit id) on a connection."""

    unit_id: int = Field(1, ge=0, le=255)
    manufacturer: str | None = None
    model: str | None = None
    interval: Duration = Field(1.0, gt=0)  # poll interval of points without a group
    groups: dict[str, Duration] = {}  # poll group name -> interval
    max_interval: Duration | None = Field(60.0, gt=0)  # report unchanged values at least this often
    max_gap: int = Field(0, ge=0, le=124)  # unused registers one read may bridge
    max_registers: int = Field(125, ge=1, le=125)  # per read of holding/input registers
    max_bits: int = Field(2000, ge=1, le=2000)  # per read of coils/discrete inputs
    fail_after: int = Field(3, ge=1)  # failed polls in a row before the device is offline
    write_multiple: bool = False  # write single registers with FC 16 (for devices without FC 6)
    # The order of the device's multi-register numbers, for points that do not give their own
    # (a meter that sends every float32 as CDAB says so once).
    order: Order | None = None
    points: Annotated[list[PointConfig], unique("key", "points")] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _device_order(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("order") is None or not isinstance(data.get("points"), list):
            return data
        numbers = tuple({None, *(t.value for t in DataType)} - {"bool", "bit", "string"})  # None: uint16; a tuple: a type may be a list
        points = [
            {**point, "order": data["order"]}
            if isinstance(point, dict) and "order" not in point and point.get("type") in numbers
            and point.get("table", "holding") in ("holding", "input")
            else point
            for point in data["points"]
        ]
        return {**data, "points": points}

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        for group, interval in self.groups.items():
            if interval <= 0:
                raise ValueError(f"group {group!r}: the interval must be more than 0:")
        for point in self.points:
            if point.group is not None and point.group not in self.groups:
                known = ", ".join(sorted(self.groups)) or "none defined under groups:"
                raise ValueError(f"point {point.key!r} names group {point.group!r}; expected one of {known}:")
            if point.width > self.max_registers and not point.table.is_bits:
                raise ValueError(f"point {point.key!r} spans {point.width} registers; max_registers is {self.max_registers}:")
        return self


class ConnectionBase(Model):
    timeout: Duration = Field(1.0, gt=0)  # per request
    retries: int = Field(0, ge=0, le=5)  # repeats of a request that got no answer
    devices: Annotated[list[DeviceConfig], unique("unit_id", "devices on one connection")] = Field(min_length=1)


class TcpConnection(ConnectionBase):
    transport: Literal["tcp"]
    host: str
    port: int = Field(502, ge=1, le=65535)
    # socket: Modbus TCP (MBAP header). rtu: RTU frames with their CRC over the TCP stream, as a
    # serial device server (an RS-485-to-Ethernet converter in transparent mode) passes them on.
    framing: Literal["socket", "rtu"] = "socket"


class Rs485(Model):
    """Kernel RS-485 mode of the serial port (for UARTs that drive the transceiver's DE pin)."""

    enabled: bool = True
    rts_level_for_tx: bool = True
    rts_level_for_rx: bool = False
    delay_before_tx: Duration | None = None
    delay_before_rx: Duration | None = None


class RtuConnection(ConnectionBase):
    transport: Literal["rtu"]
    port: str = Field(min_length=1)  # e.g. /dev/ttyUSB0 or /dev/serial/by-id/...
    baudrate: int = Field(19200, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    rs485: Rs485 | None = None
    handle_local_echo: bool = False  # the adapter hears its own frames (2-wire dongles without echo suppression)


def _transport(value: object) -> str | None:
    kind = value.get("transport") if isinstance(value, dict) else getattr(value, "transport", None)
    return f"[{kind}]" if kind in ("tcp", "rtu") else None


# The tags carry brackets so that error paths skip them (connections[0].host, not connections[0].tcp.host).
Connection = Annotated[
    Annotated[TcpConnection, Tag("[tcp]")] | Annotated[RtuConnection, Tag("[rtu]")],
    Discriminator(_transport, custom_error_type="transport", custom_error_message="expected transport: tcp or rtu:"),
]


class ModbusConfig(AdapterConfig):
    type: Literal["modbus"]
    connections: list[Connection] = Field(min_length=1)

    def declared_points(self) -> dict[str, dict[str, bool]]:
        return {f"{self.instance}/{d.id}": {p.key: p.writable for p in d.points} for c in self.connections for d in c.devices}

    @model_validator(mode="after")
    def _unique_devices(self) -> ModbusConfig:
        distinct((device.id for connection in self.connections for device in connection.devices), "devices", "id")
        return self
