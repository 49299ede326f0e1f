"""Modbus TCP and RTU devices through pymodbus: register maps polled, points written."""

from edged.adapters import Entry

ENTRY = Entry(config="edged.adapters.modbus.config:ModbusConfig", adapter="edged.adapters.modbus.adapter:ModbusAdapter")
