"""The contract every adapter passes (after trio's check_streams): each
adapter's test module calls these with a running adapter of its own."""

from __future__ import annotations

import asyncio

from edged.adapter import Adapter
from edged.hub import Hub
from edged.model import Command, CommandStatus, Origin, Quality


async def check_devices_report(adapter: Adapter, hub: Hub, watch, timeout: float = 10.0) -> None:
    """Devices are registered under the adapter's name, come online and report good values."""

    def reported() -> bool:
        devices = hub.adapter_devices(adapter.name)
        return bool(devices) and all(
            d.online and d.id.startswith(f"{adapter.name}/") and any(
                (r := hub.value(d.id, key)) is not None and r.quality is Quality.GOOD for key in d.points
            )
            for d in devices
        )

    await watch.until(reported, timeout)
    assert adapter.state == "running"


async def check_read_only_rejected(hub: Hub, device_id: str, key: str) -> None:
    result = await hub.execute(Command(device_id, key, 1, Origin.API))
    assert result.status is CommandStatus.REJECTED
    assert "read-only" in (result.reason or "")


async def check_write_round_trip(hub: Hub, watch, device_id: str, key: str, value: object) -> None:
    """A write succeeds and the device then reports the written value."""
    result = await hub.execute(Command(device_id, key, value, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    await watch.until(lambda: (r := hub.value(device_id, key)) is not None and r.value == value)


async def check_stop_marks_offline(adapter: Adapter, hub: Hub, task: asyncio.Task[None]) -> None:
    """Cancelling ``run()`` stops the adapter cleanly, marks its devices offline,
    and commands for them are refused instead of reaching a stopped adapter."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert adapter.state == "stopped"
    assert all(not d.online for d in hub.adapter_devices(adapter.name))
    writable = [(d.id, p) for d in hub.adapter_devices(adapter.name) for p in d.points.values() if p.writable]
    for device_id, point in writable[:1]:
        value = {"bool": True, "int": 1, "float": 1.0, "str": "x"}[point.type.value]
        result = await hub.execute(Command(device_id, point.key, value, Origin.API))
        assert (result.status, result.reason) == (CommandStatus.REJECTED, "device offline")


STACKS = ("pymodbus", "asyncua", "zigpy", "bellows", "zigpy_znp", "bleak", "serial", "aiocoap", "aiomqtt", "aiohttp")


def check_entry(type_: str) -> None:
    """The adapter folder's ``ENTRY`` names parts that exist, and validating a configuration
    of this type imports no protocol stack."""
    import dataclasses
    import importlib.util
    import json
    import subprocess
    import sys
    import typing

    from edged import adapters
    from edged.adapter import AdapterConfig, AdapterStats, Route
    from edged.part import FIGURE

    entry = adapters.registry()[type_]
    config = adapters.config_model(type_)
    assert issubclass(config, AdapterConfig)
    assert config.model_fields["type"].annotation is not str, "type: is a Literal of the adapter's own name"
    cls = adapters.adapter_class(type_)
    assert issubclass(cls, Adapter) and cls.config_model is config
    stats_class = typing.get_type_hints(cls.stats)["return"]
    assert issubclass(stats_class, AdapterStats), "stats() gives what every adapter counts, and more if it likes"
    for field in dataclasses.fields(stats_class):
        assert FIGURE in field.metadata, f"{stats_class.__name__}.{field.name} declares no metric"
    routes = adapters.routes(type_)
    assert all(isinstance(route, Route) for route in routes)
    assert len({route.path for route in routes}) == len(routes), "one handler per operation"
    if entry.cli is not None:
        module = adapters.cli_module(type_)
        assert callable(getattr(module, "add_arguments", None)) and callable(getattr(module, "main", None))
        assert entry.cli_help, "the command has a line in edged --help"
    module = importlib.util.resolve_name(entry.config.partition(":")[0], entry.package)
    probe = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True, text=True).stdout))
    assert not {stack for stack in STACKS if stack in loaded}, f"validating a {type_} configuration imports a protocol stack"
