"""The rules engine, imported as edged.rules."""
