"""``edged opcua browse`` against an asyncua server: the tree, the nodes: entries it prints, and its limits."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator

import pytest
import yaml
from asyncua import ua

from edged.adapters.opcua import cli
from edged.adapters.opcua.adapter import OpcuaAdapter
from edged.adapters.opcua.certs import CERT_FILE, KEY_FILE
from edged.adapters.opcua.config import OpcuaConfig
from edged.model import Quality
from tests.adapters.opcua_server import NAMESPACE, OTHER_NAMESPACE, PlantServer, free_port
from tests.adapters.test_opcua_security import CLIENT_URI, make_cert

BOILER = f"0:Objects/nsu={NAMESPACE};Boiler"
CELSIUS = ua.EUInformation(
    NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
    UnitId=int.from_bytes(b"CEL", "big"),
    DisplayName=ua.LocalizedText("°C"),
)


@pytest.fixture
async def plant() -> AsyncIterator[PlantServer]:
    """The plant's namespace at index 3 (a decoy vendor namespace holds 2), with a unit and a read-only node."""
    server = PlantServer(free_port(), shadow=OTHER_NAMESPACE)
    await server.start()
    ns = await server.namespace_index()
    await server.nodes["Temperature"].add_property(
        ua.NodeId("Boiler.Temperature.EngineeringUnits", ns),
        ua.QualifiedName("EngineeringUnits", 0),
        ua.Variant(CELSIUS, ua.VariantType.ExtensionObject),
        datatype=ua.NodeId(ua.ObjectIds.EUInformation),
    )
    await server.nodes["Counter"].set_read_only()
    yield server
    await server.stop()


async def browse(*argv: str) -> int:
    """Run ``edged opcua browse ARGV`` (in a thread: it runs its own event loop, the server runs in this one)."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["browse", *argv])
    return await asyncio.to_thread(cli.main, args)


async def test_tree_lists_variables_by_namespace_uri_with_type_access_and_unit(plant, capsys):
    assert await browse(plant.endpoint) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "Objects  i=85"
    assert f"    Temperature  nsu={NAMESPACE};s=Boiler.Temperature  Double  rw  Cel" in lines
    assert f"    Counter  nsu={NAMESPACE};s=Boiler.Counter  UInt32  r" in lines
    assert f"    Profile  nsu={NAMESPACE};s=Boiler.Profile  Double[]  rw" in lines
    assert f"    Ramp()  nsu={NAMESPACE};s=Boiler.Ramp  method" in lines
    assert f"    Temperature  nsu={OTHER_NAMESPACE};s=Boiler.Temperature  Double  rw" in lines  # the decoy, by its own URI
    assert not any("ns=" in line for line in lines)  # never by index
    assert "  Server  i=2253  (not expanded: --path 0:Objects/0:Server)" in lines
    assert not any("ServerStatus" in line for line in lines)


async def test_yaml_entries_validate_and_read_the_values_in_a_real_adapter(plant, capsys, hub, watch, running, tmp_path):
    assert await browse(plant.endpoint, "--path", BOILER, "--yaml") == 0
    nodes = yaml.safe_load(capsys.readouterr().out)["nodes"]
    by_key = {n["key"]: n for n in nodes}
    assert by_key["temperature"] == {
        "key": "temperature", "node": f"nsu={NAMESPACE};s=Boiler.Temperature", "type": "float", "unit": "Cel", "writable": True
    }  # fmt: skip
    assert by_key["counter"]["writable"] is False and by_key["counter"]["type"] == "int"
    assert by_key["pump"]["type"] == "bool" and by_key["mode"]["type"] == "str"
    assert by_key["profile"] == {"key": "profile", "node": f"nsu={NAMESPACE};s=Boiler.Profile", "type": "str", "writable": False}

    config = OpcuaConfig.model_validate({
        "type": "opcua", "name": "plc", "endpoint": plant.endpoint,
        "subscription": {"publishing_interval": 0.05}, "devices": [{"id": "boiler", "nodes": nodes}],
    })  # fmt: skip
    running(OpcuaAdapter(config, hub, tmp_path))
    expected = {"temperature": 20.0, "setpoint": 21.0, "level": 7, "pump": False, "counter": 0, "mode": "auto",
                "profile": "[20.0, 35.5, 50.0]"}  # fmt: skip
    await watch.until(lambda: all((r := hub.value("plc/boiler", k)) and r.value == v for k, v in expected.items()))
    assert all(hub.value("plc/boiler", k).quality is Quality.GOOD for k in expected)


async def test_depth_limits_the_levels_listed(plant, capsys):
    assert await browse(plant.endpoint, "--depth", "1") == 0
    out = capsys.readouterr().out
    assert f"  Boiler  nsu={NAMESPACE};s=Boiler\n" in out
    assert "Temperature" not in out
    assert "nodes at depth 1 were not expanded" in out


async def test_node_cap_cuts_the_listing_and_says_so(plant, capsys):
    assert await browse(plant.endpoint, "--path", BOILER, "--max-nodes", "4") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 4 + 1  # heading, four nodes, the cut
    assert lines[-1].startswith("... stopped after 4 nodes")


async def test_unreachable_endpoint_exits_3_with_the_reason(capsys):
    assert await browse(f"opc.tcp://127.0.0.1:{free_port()}/") == 3
    err = capsys.readouterr().err
    assert "cannot reach" in err and "ConnectionRefusedError" in err


async def test_path_the_server_does_not_have_exits_2(plant, capsys):
    assert await browse(plant.endpoint, "--path", "0:Objects/nsu=urn:nowhere;Boiler") == 2
    assert "the server has no namespace urn:nowhere" in capsys.readouterr().err


async def test_secure_policy_without_certificates_exits_2(capsys):
    assert await browse("opc.tcp://127.0.0.1:4840/", "--policy", "Basic256Sha256", "--mode", "Sign") == 2
    assert "needs --certificate and --private-key" in capsys.readouterr().err


async def test_browses_over_a_secure_channel_with_the_adapter_security_options(tmp_path, capsys):
    client = make_cert(tmp_path / "client")
    server = PlantServer(free_port(), security=True, cert_dir=tmp_path, trusted_client=client / CERT_FILE)
    await server.start()
    try:
        code = await browse(
            server.endpoint, "--path", BOILER, "--policy", "Basic256Sha256", "--mode", "SignAndEncrypt",
            "--certificate", str(client / CERT_FILE), "--private-key", str(client / KEY_FILE),
            "--application-uri", CLIENT_URI, "--server-certificate", str(server.server_files().certificate),
        )  # fmt: skip
    finally:
        await server.stop()
    assert code == 0, capsys.readouterr().err
    assert f"  Setpoint  nsu={NAMESPACE};s=Boiler.Setpoint  Float  rw" in capsys.readouterr().out
