"""YAML that remembers where each value came from.

``load`` returns the plain data (dicts, lists, scalars) and a ``SourceMap``
from key paths such as ``("adapters", 1, "registers", 3, "type")`` to the
file and line that wrote them, so validation errors can point at the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edged.errors import ConfigError, ConfigProblem

KeyPath = tuple[str | int, ...]


@dataclass
class SourceMap:
    lines: dict[KeyPath, tuple[str, int]] = field(default_factory=dict)

    def locate(self, path: KeyPath, default_file: str) -> tuple[str, int | None]:
        """The file and line of ``path``, or of its nearest located parent."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return default_file, None

    def merge(self, other: SourceMap, prefix: KeyPath = (), shift: int = 0) -> None:
        """Add ``other``'s entries; list indexes under ``prefix`` are moved by ``shift``."""
        n = len(prefix)
        for path, where in other.lines.items():
            moved = path
            if shift and len(path) > n and path[:n] == prefix and isinstance(path[n], int):
                moved = (*prefix, path[n] + shift, *path[n + 1 :])
            self.lines.setdefault(moved, where)


def format_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load(file: Path) -> tuple[Any, SourceMap]:
    name = str(file)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"cannot read: {exc.strerror}")]) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError([ConfigProblem(name, line, "", f"YAML syntax error: {exc.problem or exc}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"YAML error: {exc}")]) from exc
    finally:
        loader.dispose()
    sources = SourceMap()
    problems: list[ConfigProblem] = []
    if node is not None:
        _walk(node, (), name, sources, problems)
    if problems:
        raise ConfigError(problems)
    return data, sources


def _walk(node: yaml.Node, path: KeyPath, file: str, sources: SourceMap, problems: list[ConfigProblem]) -> None:
    sources.lines.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = (*path, key)
            if key in seen:
                problems.append(ConfigProblem(file, key_node.start_mark.line + 1, format_path(child), "duplicate key"))
            seen.add(key)
            sources.lines[child] = (file, key_node.start_mark.line + 1)
            _walk(value_node, child, file, sources, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), file, sources, problems)
