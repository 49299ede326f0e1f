"""modbus adapter (being built)."""
