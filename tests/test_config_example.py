"""config.example.yaml runs as it is, and every commented example block in
it (between ``# --- begin NAME ---`` and ``# --- end NAME ---``) is valid
once uncommented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edged.config import load_config

EXAMPLE = Path(__file__).parent.parent / "config.example.yaml"
BLOCK = re.compile(r"^# --- begin (\S+) ---\n(.*?)^# --- end \1 ---\n", re.M | re.S)


def blocks() -> list[str]:
    return [m.group(1) for m in BLOCK.finditer(EXAMPLE.read_text())]


def test_example_is_valid():
    config = load_config(EXAMPLE)
    assert [a.type for a in config.adapters] == ["simulated"]


@pytest.mark.parametrize("name", blocks() or [pytest.param("none", marks=pytest.mark.skip("no example blocks yet"))])
def test_example_block_is_valid(name, tmp_path):
    text = EXAMPLE.read_text()
    match = next(m for m in BLOCK.finditer(text) if m.group(1) == name)
    body = "".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in match.group(2).splitlines(True))
    (tmp_path / "config.yaml").write_text(text.replace(match.group(0), body))
    load_config(tmp_path / "config.yaml")
