"""A wrong Modbus register map is refused with a message naming the line, the key and what was expected."""

from __future__ import annotations

import pytest

from edged.config import load_config
from edged.errors import ConfigError

HEAD = """\
adapters:
  - type: modbus
    name: plant
    connections:
      - transport: tcp
        host: 127.0.0.1
        devices:
          - id: meter
            groups: {fast: 200ms}
            points:
"""  # the smallest map the tests need: the port and the unit id are left at their defaults


def problems(tmp_path, points: str) -> list[str]:
    path = tmp_path / "config.yaml"
    path.write_text(HEAD + points)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("points", "line", "path", "message"),
    [
        ("              - {key: a, address: 0, type: int17}\n", 11,
         "adapters[0].connections[0].devices[0].points[0].type", "expected 'bool', 'bit', 'int16'"),
        ("              - {key: a, address: 0, table: input, writable: true}\n", 11,
         "adapters[0].connections[0].devices[0].points[0]", "only holding registers and coils are writable"),
        ("              - {key: a, address: 3, type: string}\n", 11,
         "adapters[0].connections[0].devices[0].points[0]", "type string needs length"),
        ("              - {key: a, address: 3, group: slow}\n", 8,
         "adapters[0].connections[0].devices[0]", "names group 'slow'; expected one of fast"),
        ("              - {key: a, address: 65535, type: float32}\n", 11,
         "adapters[0].connections[0].devices[0].points[0]", "runs past 65535"),
        ("              - {key: a, table: coil, address: 1, type: uint16}\n", 11,
         "adapters[0].connections[0].devices[0].points[0]", "coil points are type bool"),
    ],
)
def test_bad_point_is_located_and_explained(tmp_path, points, line, path, message):
    found = problems(tmp_path, points)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'config.yaml'}:{line}: {path}: ")
    assert message in found[0]


def test_transport_is_required_and_checked(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(HEAD.replace("transport: tcp", "transport: udp") + "              - {key: a, address: 0}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:5: adapters[0].connections[0]: expected transport: tcp or rtu"


def test_a_device_order_applies_to_its_numbers_that_give_none(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(HEAD.replace("            points:\n", "            order: CDAB\n            points:\n") + """\
              - {key: power, address: 0, type: float32}
              - {key: energy, address: 2, type: float64, order: ABCD}
              - {key: status, address: 6}
              - {key: serial, address: 7, type: string, length: 4}
              - {key: alarm, address: 11, type: bit, bit: 3}
              - {key: relay, table: coil, address: 0}
""")
    points = {p.key: p for p in load_config(path).adapters[0].connections[0].devices[0].points}
    assert {k: p.order.value for k, p in points.items()} == {
        "power": "CDAB", "status": "CDAB",  # numbers without an order of their own
        "energy": "ABCD",  # its own order wins
        "serial": "ABCD", "alarm": "ABCD", "relay": "ABCD",  # not numbers: the order does not apply
    }
