"""Protocol adapters, imported as ``edged.adapters.<type>``.

Each folder here is one adapter type, named as ``type:`` names it in a
configuration, and its ``__init__.py`` says in an ``Entry`` where its parts
live: the config model, the adapter class, and, where it has them, the
status API routes and the ``edged <type> ...`` command. Entries hold only
names, so listing them imports nothing: a config model imports nothing but
pydantic, and an adapter's protocol stack is imported only when a
configuration actually runs it. docs/adapters.md tells how to add one.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, replace
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edged.adapter import Adapter, AdapterConfig, Route


@dataclass(frozen=True)
class Entry:
    """Where an adapter type's parts live, each as ``"module:attribute"``; a module
    name that starts with a dot is found in the adapter's folder (``.config:ModbusConfig``)."""

    config: str  # its config model (a subclass of AdapterConfig)
    adapter: str  # its adapter class
    routes: str | None = None  # a list of Route the status API serves for each instance
    cli: str | None = None  # a module with add_arguments(parser) and main(args): ``edged <type> ...``
    cli_help: str = ""  # the command's line in ``edged --help``
    package: str | None = None  # the folder's module; set by the registry


@cache
def registry() -> dict[str, Entry]:
    """type -> Entry, for every adapter folder of this package."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        package = f"{__name__}.{module.name}"
        entry = getattr(importlib.import_module(package), "ENTRY", None)
        if module.ispkg and isinstance(entry, Entry):
            found[module.name] = replace(entry, package=package)
    return found


def _resolve(ref: str, package: str | None) -> Any:
    module, _, attribute = ref.partition(":")
    loaded = importlib.import_module(module, package)
    return getattr(loaded, attribute) if attribute else loaded


def config_model(type_: str) -> type[AdapterConfig]:
    entry = registry()[type_]
    return _resolve(entry.config, entry.package)


def adapter_class(type_: str) -> type[Adapter]:
    entry = registry()[type_]
    return _resolve(entry.adapter, entry.package)


def routes(type_: str) -> list[Route]:
    entry = registry()[type_]
    return [] if entry.routes is None else list(_resolve(entry.routes, entry.package))


def cli_module(type_: str) -> ModuleType | None:
    entry = registry()[type_]
    return None if entry.cli is None else _resolve(entry.cli, entry.package)
