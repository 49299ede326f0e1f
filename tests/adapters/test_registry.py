"""Every adapter folder is found by the registry and keeps the adapter contract's shape."""

from __future__ import annotations

import pytest

from edged import adapters
from edged.cli import subcommands
from tests.adapters.conformance import check_entry


@pytest.mark.parametrize("type_", sorted(adapters.registry()))
def test_entry_names_parts_that_exist_and_config_stays_light(type_: str) -> None:
    check_entry(type_)


def test_every_adapter_folder_is_registered_and_brings_its_command() -> None:
    assert set(adapters.registry()) == {"ble", "modbus", "opcua", "simulated", "zigbee"}
    commands = subcommands()
    for type_, entry in adapters.registry().items():
        assert (type_ in commands) == (entry.cli is not None)
