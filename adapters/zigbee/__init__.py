"""zigbee adapter (being built)."""
