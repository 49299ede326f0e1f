"""The OPC UA adapter never reads or writes a node in the wrong namespace when the
server renumbers its namespaces (a real asyncua server, restarted with another
namespace registered before the plant's, whose decoy nodes sit at the old index)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

from edged.adapters.opcua.adapter import OpcuaAdapter
from edged.adapters.opcua.config import OpcuaConfig
from edged.adapters.opcua.namespaces import MAP_FILE
from edged.cli import main as edged_main
from edged.model import Command, CommandStatus, Origin, Quality
from tests.adapters.opcua_server import NAMESPACE, OTHER_NAMESPACE, PlantServer, free_port

DEVICE = "plc/boiler"


def make_config(endpoint: str, nodes: list[dict[str, object]]) -> OpcuaConfig:
    return OpcuaConfig.model_validate(
        {
            "type": "opcua",
            "name": "plc",
            "endpoint": endpoint,
            "keepalive": 0.5,
            "timeout": 2,
            "reconnect": {"initial": 0.2, "maximum": 1},
            "subscription": {"publishing_interval": 0.05, "sampling_interval": 0.02},
            "devices": [{"id": "boiler", "nodes": nodes}],
        }
    )


BY_INDEX = [
    {"key": "temperature", "node": "ns=2;s=Boiler.Temperature"},
    {"key": "setpoint", "path": "0:Objects/2:Boiler/2:Setpoint", "writable": True},
]
BY_URI = [
    {"key": "temperature", "node": f"nsu={NAMESPACE};s=Boiler.Temperature"},
    {"key": "setpoint", "path": f"0:Objects/nsu={NAMESPACE};Boiler/nsu={NAMESPACE};Setpoint", "writable": True},
]


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    server = PlantServer(free_port())
    await server.start()
    assert await server.namespace_index() == 2
    yield server
    await server.stop()


def values_seen(hub, key: str) -> list[object]:
    seen: list[object] = []
    hub.subscribe(lambda batch: seen.extend(r.value for r in batch if r.key == key))
    return seen


async def restart(plant: PlantServer, hub, watch, *, namespace: str = NAMESPACE) -> None:
    """Restart the server with OTHER_NAMESPACE at index 2 (its decoy Boiler there) and the plant's after it."""
    await plant.stop()
    await watch.until(lambda: not hub.devices[DEVICE].online)
    plant.shadow, plant.namespace = OTHER_NAMESPACE, namespace
    await plant.start()
    assert await plant.server.get_namespace_index(OTHER_NAMESPACE) == 2
    await watch.until(lambda: hub.devices[DEVICE].online)


async def write(hub, key: str, value: object):
    return await hub.execute(Command(DEVICE, key, value, Origin.API))


async def test_a_node_named_by_index_follows_its_namespace_to_the_new_index(plant, hub, watch, running, tmp_path):
    adapter = OpcuaAdapter(make_config(plant.endpoint, BY_INDEX), hub, tmp_path)
    running(adapter)
    await watch.until(lambda: (r := hub.value(DEVICE, "setpoint")) and r.value == 21.0)
    temperatures = values_seen(hub, "temperature")

    await restart(plant, hub, watch)
    assert await plant.namespace_index() == 3
    await plant.set("Temperature", 33.0)
    await watch.until(lambda: (r := hub.value(DEVICE, "temperature")) and r.value == 33.0)
    result = await write(hub, "setpoint", 24.0)
    assert result.status is CommandStatus.OK, result.reason
    assert await plant.get("Setpoint") == 24.0  # the write landed on the plant's node...
    assert await plant.decoys["Setpoint"].read_value() == -99.0  # ...not on the node now at ns=2
    assert -99.0 not in temperatures  # the decoy was never read
    assert adapter.reconnects_total >= 1


async def test_the_namespace_behind_an_index_survives_a_restart_of_edged(plant, hub, watch, running, tmp_path):
    nodes = [{"key": "setpoint", "node": "ns=2;s=Boiler.Setpoint", "writable": True}]
    first = running(OpcuaAdapter(make_config(plant.endpoint, nodes), hub, tmp_path))
    await watch.until(lambda: (r := hub.value(DEVICE, "setpoint")) and r.value == 21.0)
    first.cancel()
    await watch.until(lambda: not hub.devices[DEVICE].online)

    await plant.stop()
    plant.shadow = OTHER_NAMESPACE
    await plant.start()  # edged starts again against a server whose ns=2 is now another vendor's
    seen = values_seen(hub, "setpoint")
    running(OpcuaAdapter(make_config(plant.endpoint, nodes), hub, tmp_path))
    await watch.until(lambda: hub.devices[DEVICE].online and seen)
    result = await write(hub, "setpoint", 25.0)
    assert result.status is CommandStatus.OK, result.reason
    assert await plant.get("Setpoint") == 25.0
    assert await plant.decoys["Setpoint"].read_value() == -99.0
    assert -99.0 not in seen
    assert json.loads((tmp_path / MAP_FILE).read_text())["namespaces"] == {"2": NAMESPACE}


async def test_a_node_named_by_uri_works_across_the_renumbering(plant, hub, watch, running, tmp_path):
    running(OpcuaAdapter(make_config(plant.endpoint, BY_URI), hub, tmp_path))
    await watch.until(lambda: (r := hub.value(DEVICE, "temperature")) and r.value == 20.0)
    assert (await write(hub, "setpoint", 22.0)).status is CommandStatus.OK
    assert await plant.get("Setpoint") == 22.0

    await restart(plant, hub, watch)
    await plant.set("Temperature", 34.0)
    await watch.until(lambda: (r := hub.value(DEVICE, "temperature")) and r.value == 34.0)
    result = await write(hub, "setpoint", 23.0)
    assert result.status is CommandStatus.OK, result.reason
    assert await plant.get("Setpoint") == 23.0
    assert await plant.decoys["Setpoint"].read_value() == -99.0


@pytest.mark.parametrize("nodes", [BY_INDEX, BY_URI], ids=["by-index", "by-uri"])
async def test_a_namespace_the_server_no_longer_has_makes_points_bad_and_refuses_writes(
    plant, hub, watch, running, tmp_path, caplog, nodes
):
    adapter = OpcuaAdapter(make_config(plant.endpoint, nodes), hub, tmp_path)
    running(adapter)
    await watch.until(lambda: (r := hub.value(DEVICE, "temperature")) and r.quality is Quality.GOOD)

    await restart(plant, hub, watch, namespace="urn:edged:test:plant:v2")  # the plant's URI is gone
    for key in ("temperature", "setpoint"):
        reading = hub.value(DEVICE, key)
        assert reading.quality is Quality.BAD and reading.value is None, key
    result = await write(hub, "setpoint", 30.0)
    assert result.status is CommandStatus.FAILED
    assert NAMESPACE in result.reason and "no" in result.reason, result.reason
    assert await plant.decoys["Setpoint"].read_value() == -99.0  # nothing was sent
    assert await plant.get("Setpoint") == 21.0

    def reports() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records
            if r.name == adapter.log.name and getattr(r, "device", None) == DEVICE and NAMESPACE in r.getMessage()
        ]

    assert len(reports()) == 1, [r.getMessage() for r in reports()]
    # Still missing after the next reconnect: not reported again.
    sessions = adapter.reconnects_total
    await plant.stop()
    await watch.until(lambda: not hub.devices[DEVICE].online)
    await plant.start()
    await watch.until(lambda: hub.devices[DEVICE].online)
    assert adapter.reconnects_total > sessions
    assert len(reports()) == 1


async def test_a_write_to_a_node_the_server_does_not_have_answers_with_the_server_reason(plant, hub, watch, running, tmp_path):
    nodes = [
        {"key": "temperature", "node": "ns=2;s=Boiler.Temperature"},
        {"key": "ghost", "node": "ns=2;s=Boiler.Ghost", "writable": True},
    ]
    running(OpcuaAdapter(make_config(plant.endpoint, nodes), hub, tmp_path))
    await watch.until(lambda: (d := hub.devices.get(DEVICE)) is not None and d.online and hub.value(DEVICE, "temperature"))
    result = await write(hub, "ghost", 1.0)
    assert result.status is CommandStatus.FAILED
    assert "BadNodeIdUnknown" in result.reason and "not connected" not in result.reason, result.reason


async def test_an_unreadable_namespace_map_stops_index_nodes_only(plant, hub, watch, running, tmp_path):
    (tmp_path / MAP_FILE).write_text("{not json")
    nodes = [
        {"key": "temperature", "node": f"nsu={NAMESPACE};s=Boiler.Temperature"},
        {"key": "setpoint", "node": "ns=2;s=Boiler.Setpoint", "writable": True},
    ]
    running(OpcuaAdapter(make_config(plant.endpoint, nodes), hub, tmp_path))
    await watch.until(lambda: (r := hub.value(DEVICE, "setpoint")) and r.quality is Quality.BAD)
    await watch.until(lambda: (r := hub.value(DEVICE, "temperature")) and r.value == 20.0)
    result = await write(hub, "setpoint", 30.0)
    assert result.status is CommandStatus.FAILED and MAP_FILE in result.reason, result.reason
    assert (tmp_path / MAP_FILE).read_text() == "{not json"  # left for the operator, not overwritten


CHECKED = """\
adapters:
  - type: opcua
    endpoint: opc.tcp://plc:4840
    devices:
      - id: boiler
        nodes:
"""


def test_check_config_suggests_the_uri_form_for_index_nodes(tmp_path, capsys):
    path = tmp_path / "edged.yaml"
    path.write_text(
        CHECKED
        + "          - {key: temp, node: 'ns=2;s=Boiler.Temp'}\n"
        + "          - {key: level, path: '0:Objects/2:Boiler/2:Level'}\n"
        + "          - {key: state, node: 'i=2259'}\n"
    )
    assert edged_main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "ok (1 adapter(s)" in out
    (warning,) = err.splitlines()  # one line per namespace index, not per node
    assert warning.startswith(f"{path}: warning: adapters[0].devices[0].nodes[0].node: 2 node(s) name namespace 2")
    assert "'nsu=<URI of namespace 2>;s=Boiler.Temp'" in warning

    path.write_text(CHECKED + f"          - {{key: temp, node: 'nsu={NAMESPACE};s=Boiler.Temp'}}\n")
    assert edged_main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == ""
