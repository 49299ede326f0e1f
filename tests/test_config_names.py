"""Device ids, point keys and rule ids follow one rule in every adapter, and a
list that names two of its items alike is refused naming the duplicate, with
the file and line of the list."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edged.config import load_config
from edged.errors import ConfigError

MODBUS = """\
adapters:
  - type: modbus
    name: plant
    connections:
      - transport: tcp
        host: 127.0.0.1
        devices:
          - id: {device}
            points:
              - {{key: {key}, address: 0}}
"""

OPCUA = """\
adapters:
  - type: opcua
    name: plc
    endpoint: opc.tcp://127.0.0.1:4840
    devices:
      - id: {device}
        nodes:
          - {{key: {key}, node: "ns=2;i=1"}}
"""

BLE = """\
adapters:
  - type: ble
    name: ble
    gatt:
      - id: {device}
        address: "F0:00:00:00:00:10"
        characteristics:
          - {{key: {key}, uuid: 2a6e, notify: true}}
"""

SIMULATED = """\
adapters:
  - type: simulated
    name: sim
    devices:
      - {{id: {device}, kind: relay}}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in caught.value.problems]


@pytest.mark.parametrize(
    ("template", "where"),
    [
        (MODBUS, "8: adapters[0].connections[0].devices[0].id"),
        (OPCUA, "6: adapters[0].devices[0].id"),
        (BLE, "5: adapters[0].gatt[0].id"),
        (SIMULATED, "5: adapters[0].devices[0].id"),
    ],
    ids=["modbus", "opcua", "ble", "simulated"],
)
def test_a_device_id_with_a_space_is_explained(tmp_path, template, where):
    found = problems(tmp_path, template.format(device="'hall meter'", key="power"))
    assert found == [
        f"{where}: expected a device id of letters, digits and _ . : - only (no spaces or slashes); got 'hall meter'"
    ]


@pytest.mark.parametrize(
    ("template", "where"),
    [
        (MODBUS, "10: adapters[0].connections[0].devices[0].points[0].key"),
        (OPCUA, "8: adapters[0].devices[0].nodes[0].key"),
        (BLE, "8: adapters[0].gatt[0].characteristics[0].key"),
    ],
    ids=["modbus", "opcua", "ble"],
)
def test_a_point_key_with_a_slash_is_explained(tmp_path, template, where):
    found = problems(tmp_path, template.format(device="meter", key="a/b"))
    assert found == [f"{where}: expected a point key of letters, digits and _ . : - only (no spaces or slashes); got 'a/b'"]


def test_every_adapter_takes_the_same_keys_and_ids(tmp_path):
    """A colon is as good in a BLE characteristic's key as in an OPC UA node's or a Modbus point's."""
    path = tmp_path / "config.yaml"
    taken = []
    for template in (MODBUS, OPCUA, BLE):
        path.write_text(template.format(device="line-1.meter:a", key="phase:L1"))
        adapter = load_config(path).adapters[0]
        for device in getattr(adapter, "gatt", None) or getattr(adapter, "connections", [adapter])[0].devices:
            points = getattr(device, "points", None) or getattr(device, "nodes", None) or device.characteristics
            taken.append((adapter.type, device.id, [point.key for point in points]))
    assert taken == [(kind, "line-1.meter:a", ["phase:L1"]) for kind in ("modbus", "opcua", "ble")]


def test_a_rule_id_follows_the_same_rule(tmp_path):
    found = problems(tmp_path, textwrap.dedent("""\
        rules:
          - id: hall light
            triggers: [{type: event, name: x}]
            actions: [{type: log, message: hi}]
    """))
    assert found == [
        "2: rules[0] (id hall light).id: expected a rule id of letters, digits and _ . : - only (no spaces or slashes); "
        "got 'hall light'"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MODBUS.format(device="meter", key="power") + "              - {key: power, address: 1}\n",
         "9: adapters[0].connections[0].devices[0].points: two points share the key 'power'; give each a distinct key"),
        (MODBUS.format(device="meter", key="power") + "          - {id: meter, unit_id: 2, points: [{key: a, address: 0}]}\n",
         "2: adapters[0]: two devices share the id 'meter'; give each a distinct id"),
        (MODBUS.format(device="meter", key="power") + "          - {id: other, points: [{key: a, address: 0}]}\n",
         "7: adapters[0].connections[0].devices: two devices on one connection share the unit_id 1; give each a distinct unit_id"),
        (OPCUA.format(device="boiler", key="t") + "          - {key: t, node: \"ns=2;i=2\"}\n",
         "7: adapters[0].devices[0].nodes: two nodes share the key 't'; give each a distinct key"),
        (OPCUA.format(device="boiler", key="t") + "    events: [{device: boiler}]\n",
         "2: adapters[0]: two devices share the id 'boiler'; give each a distinct id"),
        (BLE.format(device="t", key="temperature") + "          - {key: temperature, uuid: 2a6f, notify: true}\n",
         "7: adapters[0].gatt[0].characteristics: two characteristics share the key 'temperature'; give each a distinct key"),
        (BLE.format(device="t", key="a") + "      - {id: t, address: 'F0:00:00:00:00:11', "
         "characteristics: [{key: a, uuid: 2a6e, notify: true}]}\n",
         "4: adapters[0].gatt: two GATT devices share the id 't'; give each a distinct id"),
        (SIMULATED.format(device="relay") + SIMULATED.removeprefix("adapters:\n").format(device="relay"),
         "1: adapters: two adapters share the name 'sim'; give each a distinct name"),
    ],
    ids=["modbus-keys", "modbus-ids", "modbus-units", "opcua-keys", "opcua-ids", "ble-keys", "ble-ids", "adapters"],
)
def test_a_duplicate_is_named(tmp_path, text, message):
    assert problems(tmp_path, text) == [message]
