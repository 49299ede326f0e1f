"""ble adapter (being built)."""
