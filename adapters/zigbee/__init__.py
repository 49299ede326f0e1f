"""Zigbee devices through zigpy: any supported radio stick, or the simulated one."""
