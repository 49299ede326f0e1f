"""edged: an edge gateway daemon for Zigbee, BLE, Modbus and OPC UA devices."""

__version__ = "0.1.0"
