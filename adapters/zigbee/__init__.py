"""Zigbee devices through zigpy: any supported radio stick, or the simulated one."""

from edged.adapters import Entry

ENTRY = Entry(".config:ZigbeeConfig", ".adapter:ZigbeeAdapter", routes=".routes:ROUTES", cli=".cli",
              cli_help="Zigbee network operations (permit joining, remove a device)")
