"""Zigbee devices through zigpy: any supported radio stick, or the simulated one."""

from edged.adapters import Entry

ENTRY = Entry(
    config="edged.adapters.zigbee.config:ZigbeeConfig",
    adapter="edged.adapters.zigbee.adapter:ZigbeeAdapter",
    routes="edged.adapters.zigbee.routes:ROUTES",
    cli="edged.adapters.zigbee.cli",
    cli_help="Zigbee network operations (permit joining, remove a device)",
)
