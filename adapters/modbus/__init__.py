"""Modbus TCP and RTU devices through pymodbus: register maps polled, points written."""

from edged.adapters import Entry

ENTRY = Entry(".config:ModbusConfig", ".adapter:ModbusAdapter")
