"""docs/ble.md lists every family and model the installed parsers know, as
scripts/ble_families.py generates it from them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("ble_families", ROOT / "scripts" / "ble_families.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_lists_the_families_and_models_of_the_parsers():
    generator = _generator()
    text = (ROOT / "docs" / "ble.md").read_text()
    recorded = re.search(r"Generated from (.*)\.\n", text)
    assert recorded is not None, "docs/ble.md lacks its generated families: run scripts/ble_families.py --write"
    if recorded.group(1) != generator.versions():
        pytest.skip(f"the doc was generated from {recorded.group(1)}; installed: {generator.versions()}")
    assert generator.replaced(text) == text, "docs/ble.md differs from the parsers: run scripts/ble_families.py --write"
    for family in ("BTHome (`bthome`)", "Xiaomi (`xiaomi`)", "Govee (`govee`)", "ThermoPro (`thermopro`)"):
        assert f"### {family}" in text
    assert "Temperature/Humidity Sensor (LYWSD03MMC)" in text
