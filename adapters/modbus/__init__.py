"""Modbus TCP and RTU devices through pymodbus: register maps polled, points written."""
