"""What the edged distribution installs, found in the source tree rather than listed by hand.

``[tool.setuptools] package-dir`` in pyproject.toml maps each import name to
its folder (``edged.adapters`` is ``adapters/``, ``edged.rules`` is
``rules/``). Every package below those folders is installed under its
mapped name, with every other file it holds (web page assets, the demo's
configuration) as package data. setuptools' own ``packages.find`` names
packages relative to the folder it searches, which cannot give
``adapters/modbus`` the name ``edged.adapters.modbus``; this does.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent


def package_dirs() -> dict[str, str]:
    """Import name -> folder, as pyproject.toml maps them."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["tool"]["setuptools"]["package-dir"]


def packages(mapping: dict[str, str]) -> dict[str, Path]:
    """Every package (a folder, with or without ``__init__.py``) below the mapped folders, by its import name."""
    found: dict[str, Path] = {}
    for name, folder in mapping.items():
        found[name] = ROOT / folder
        for sub in find_namespace_packages(ROOT / folder, exclude=["*__pycache__*"]):
            found[f"{name}.{sub}"] = ROOT / folder / sub.replace(".", "/")
    return found


def data_files(folder: Path) -> list[str]:
    """The files of a package that are not Python modules (hidden files aside)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix not in {".py", ".pyc"} and not p.name.startswith("."))


FOUND = packages(package_dirs())
setup(
    packages=sorted(FOUND),
    package_data={name: files for name, folder in FOUND.items() if (files := data_files(folder))},
)
