"""Protocol adapters, imported as ``edged.adapters.<type>``.

The registry names, for every ``type:`` a configuration may use, where its
config model and its adapter class live. Config models import nothing but
pydantic, so validating a file costs nothing; an adapter's protocol stack is
imported only when a configuration actually runs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edged.adapter import Adapter, AdapterConfig

# type -> (config model, adapter class), as "module:attribute"
REGISTRY: dict[str, tuple[str, str]] = {
    "simulated": ("edged.adapters.simulated.config:SimulatedConfig", "edged.adapters.simulated.adapter:SimulatedAdapter"),
    "modbus": ("edged.adapters.modbus.config:ModbusConfig", "edged.adapters.modbus.adapter:ModbusAdapter"),
    "opcua": ("edged.adapters.opcua.config:OpcuaConfig", "edged.adapters.opcua.adapter:OpcuaAdapter"),
    "zigbee": ("edged.adapters.zigbee.config:ZigbeeConfig", "edged.adapters.zigbee.adapter:ZigbeeAdapter"),
    "ble": ("edged.adapters.ble.config:BleConfig", "edged.adapters.ble.adapter:BleAdapter"),
}


def _resolve(ref: str) -> type:
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def config_model(type_: str) -> type[AdapterConfig]:
    return _resolve(REGISTRY[type_][0])


def adapter_class(type_: str) -> type[Adapter]:
    return _resolve(REGISTRY[type_][1])
