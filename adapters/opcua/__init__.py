"""opcua adapter (being built)."""
