"""Simulated devices (a thermostat, a relay, an energy meter) whose values
move like real ones and travel the same path as any real adapter's."""
