"""BLE configuration: mistakes are reported with the key and what was expected."""

from __future__ import annotations

import textwrap

import pytest

from edged.adapters.ble.config import BleConfig
from edged.config import load_config
from edged.errors import ConfigError


def problems(tmp_path, adapter_yaml: str) -> str:
    (tmp_path / "config.yaml").write_text("adapters:\n" + textwrap.indent(textwrap.dedent(adapter_yaml), "  "))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "config.yaml")
    return str(info.value)


def test_defaults_and_normalised_values():
    config = BleConfig.model_validate({
        "type": "ble",
        "addresses": ["a4:c1:38:00:00:01"],
        "bthome_keys": {"54:48:e6:8f:80:a5": "231D39C1D7CC1AB1AEE224CD096DB932"},
        "gatt": [{"id": "t", "address": "f0:00:00:00:00:10", "characteristics": [
            {"key": "temperature", "uuid": "0x2A6E", "decoder": "int16_le", "scale": 0.01, "notify": True}]}],
    })
    assert config.addresses == ["A4:C1:38:00:00:01"]
    assert list(config.bthome_keys) == ["54:48:E6:8F:80:A5"]
    assert "231D" not in repr(config)  # the key stays secret in logs
    assert config.gatt[0].characteristics[0].uuid == "00002a6e-0000-1000-8000-00805f9b34fb"
    assert (config.scanning, config.dedup_window, config.offline_after, config.max_connections) == ("active", 2.0, 600.0, 3)


def test_bad_address_and_key_name_the_key(tmp_path):
    text = problems(tmp_path, """
        - type: ble
          addresses: [A4-C1-38-00-00-01]
          bthome_keys: {"54:48:E6:8F:80:A5": "tooshort"}
    """)
    assert "config.yaml:4: adapters[0].addresses[0]: expected a Bluetooth address" in text
    assert "bthome_keys.54:48:E6:8F:80:A5: a bind key is 32 hexadecimal characters (16 bytes" in text
    assert "tooshort" not in text  # a secret is never echoed


def test_bad_characteristic(tmp_path):
    text = problems(tmp_path, """
        - type: ble
          gatt:
            - id: t
              address: F0:00:00:00:00:10
              characteristics:
                - {key: a, uuid: 2a6e, decoder: int17}
                - {key: b, uuid: nope, notify: true}
                - {key: c, uuid: 2a6f}
    """)
    assert "adapters[0].gatt[0].characteristics[0].decoder: expected 'int8', 'uint8'" in text
    assert "characteristics[1].uuid: expected a 16-bit UUID" in text
    assert "characteristics[2]: a characteristic needs notify: true, an interval, or writable: true" in text


def test_passive_scanning_cannot_find_gatt_devices(tmp_path):
    text = problems(tmp_path, """
        - type: ble
          scanning: passive
          gatt:
            - {id: t, address: "F0:00:00:00:00:10", characteristics: [{key: a, uuid: 2a6e, notify: true}]}
    """)
    assert "passive scanning only sees the advertisements of the families in formats:" in text


def test_keys_the_older_bthome_keys_and_family_names(tmp_path):
    config = BleConfig.model_validate({
        "type": "ble", "formats": ["mibeacon", "bthome"],
        "keys": {"a4:c1:38:02:83:f4": "e9ea895fac7cca6d30532432a516f3a8", "a4:c1:38:00:00:03": "00" * 12},
        "bthome_keys": {"54:48:e6:8f:80:a5": "231D39C1D7CC1AB1AEE224CD096DB932"},
    })
    assert config.formats == ["xiaomi", "bthome"]  # mibeacon: the older name of the xiaomi family
    assert sorted(config.all_keys()) == ["54:48:E6:8F:80:A5", "A4:C1:38:00:00:03", "A4:C1:38:02:83:F4"]
    text = problems(tmp_path, """
        - type: ble
          formats: [bthome, nordic]
    """)
    assert "formats[1]: expected 'bthome', 'atc', 'xiaomi'" in text
    text = problems(tmp_path, """
        - type: ble
          keys: {"54:48:E6:8F:80:A5": "231d39c1d7cc1ab1aee224cd096db932"}
          bthome_keys: {"54:48:E6:8F:80:A5": "00000000000000000000000000000000"}
    """)
    assert "has one key under keys: and another under bthome_keys:; keep it under keys: only" in text
    assert "231d" not in text
