"""The ``edged`` command.

Subcommands of other parts live next to their code; the table below maps a
name to a module with ``add_arguments(parser)`` and ``main(args) -> int``,
and an adapter type with a command of its own (``edged zigbee ...``) names
its module in its registry entry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edged import __version__

if TYPE_CHECKING:
    from edged.config import Config

EXIT_CONFIG = 2

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("edged.demo", "run the gateway on simulated devices"),
    "status": ("edged.status.cli", "show the running gateway's status"),
    "provision": ("edged.provision", "create the gateway key and CSR"),
    "outbox": ("edged.status.outbox_cli", "list, requeue or discard messages the cloud refused for good"),
    "rules": ("edged.rules.cli", "check rules or replay recorded readings against them"),
}


def subcommands() -> dict[str, tuple[str, str]]:
    """name -> (module, help): the gateway's own, then each adapter type's."""
    from edged import adapters

    found = dict(SUBCOMMANDS)
    for type_, entry in adapters.registry().items():
        if entry.cli is not None:
            found[type_] = (importlib.util.resolve_name(entry.cli, entry.package), entry.cli_help)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edged", description="An edge gateway for Zigbee, BLE, Modbus and OPC UA devices.")
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("-c", "--config", type=Path, default=Path(os.environ.get("EDGED_CONFIG", "/etc/edged/config.yaml")))
    run.add_argument("--log-format", choices=["text", "json"], default="text")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides gateway.log_level")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("check-config", help="validate a configuration file; exit 2 if it is invalid")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=cmd_check_config)

    argv = sys.argv[1:] if argv is None else argv
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in subcommands().items():
        sub = commands.add_parser(name, help=help_text)
        if name == chosen:  # only the command being run is imported, with what it needs
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.main)

    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


def read_config(path: Path, check_points: bool = False, apart: bool = False) -> Config | None:
    """The configuration at ``path``; ``None`` after printing its problems to stderr.
    With ``apart``, it is read in a child process (see ``load_config_apart``)."""
    from edged.config import load_config, load_config_apart
    from edged.errors import ConfigError

    try:
        return load_config_apart(path) if apart else load_config(path, check_points)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace) -> int:
    config = read_config(args.file, check_points=True)
    if config is None:
        return EXIT_CONFIG
    for index, adapter in enumerate(config.adapters):
        for line in adapter.advice():
            print(f"{args.file}: warning: adapters[{index}].{line}", file=sys.stderr)
    print(f"{args.file}: ok ({len(config.adapters)} adapter(s), {len(config.rules)} rule(s))")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edged import adapters, logs

    config = read_config(args.config, apart=True)
    if config is None:
        return EXIT_CONFIG
    logs.setup(args.log_level or config.gateway.log_level, args.log_format, config.gateway.log_levels)
    for adapter in config.adapters:
        try:
            adapters.adapter_class(adapter.type)
        except ImportError as exc:
            print(
                f"{args.config}: adapter {adapter.instance!r} needs its protocol library ({exc.name}): "
                f"pip install 'edged[{adapter.type}]'",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    from edged.daemon import Daemon

    async def serve() -> None:
        await Daemon(config, args.config, log_level=args.log_level).run()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
