"""Simulated devices (a thermostat, a relay, an energy meter) whose values
move like real ones and travel the same path as any real adapter's."""

from edged.adapters import Entry

ENTRY = Entry(".config:SimulatedConfig", ".adapter:SimulatedAdapter", routes=".routes:ROUTES", cli=".cli",
              cli_help="simulated devices: take one offline for a while")
