"""``edged demo``: the gateway on simulated devices, for a first look."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, default=EXAMPLE, help="configuration (default: the example)")


def main(args: argparse.Namespace) -> int:
    from edged.cli import main as edged_main

    print("edged demo: status page and API on http://127.0.0.1:8080 (Ctrl-C stops)")
    return edged_main(["run", "-c", str(args.config)])
