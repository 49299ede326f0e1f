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
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edged.adapter import Adapter, AdapterConfig, Route


@dataclass(frozen=True)
class Entry:
    """Where an adapter type's parts live, each as ``"module:attribute"``."""

    config: str  # its config model (a subclass of AdapterConfig)
    adapter: str  # its adapter class
    routes: str | None = None  # a list of Route the status API serves for each instance
    cli: str | None = None  # a module with add_arguments(parser) and main(args): ``edged <type> ...``
    cli_help: str = ""  # the command's line in ``edged --help``


@cache
def registry() -> dict[str, Entry]:
    """type -> Entry, for every adapter folder of this package."""
    found = {}
    for module in pkgutil.iter_modules(__path__):
        entry = getattr(importlib.import_module(f"{__name__}.{module.name}"), "ENTRY", None)
        if module.ispkg and isinstance(entry, Entry):
            found[module.name] = entry
    return found


def _resolve(ref: str) -> object:
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


def config_model(type_: str) -> type[AdapterConfig]:
    return _resolve(registry()[type_].config)  # type: ignore[return-value]


def adapter_class(type_: str) -> type[Adapter]:
    return _resolve(registry()[type_].adapter)  # type: ignore[return-value]


def routes(type_: str) -> list[Route]:
    entry = registry()[type_]
    return [] if entry.routes is None else list(_resolve(entry.routes))  # type: ignore[call-overload]


def cli_module(type_: str) -> ModuleType | None:
    entry = registry()[type_]
    return None if entry.cli is None else importlib.import_module(entry.cli)
