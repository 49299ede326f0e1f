"""YAML that remembers where each value came from.

``load`` returns the plain data (dicts, lists, scalars) and a ``SourceMap``
from key paths such as ``("adapters", 1, "registers", 3, "type")`` to the
file and line that wrote them, so validation errors can point at the line.

A file is refused, with its line, before it can cost much time or memory:
when it is larger than ``MAX_BYTES``, is not UTF-8, nests deeper than
``MAX_DEPTH``, or its aliases (``*name``) repeat more than ``MAX_ALIASED``
values (a "billion laughs" document expands to billions from a few lines).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from edged.errors import ConfigError, ConfigProblem

KeyPath = tuple[str | int, ...]

MAX_BYTES = 4 * 1024 * 1024  # per file, included files too
MAX_DEPTH = 100  # lists and mappings inside each other
MAX_ALIASED = 100_000  # values that aliases may repeat, in all

# What YAML 1.1 allows in a stream (besides a byte order mark, which is in the last ranges).
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


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
        # A key with a line break or a control character is quoted: it cannot forge a line of output.
        name = part if not isinstance(part, str) or (part.isprintable() and part) else repr(part)
        text += f"[{name}]" if isinstance(part, int) else (f".{name}" if text else str(name))
    return text


def load(file: Path) -> tuple[Any, SourceMap]:
    name = str(file)
    text = _read(file, name)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise ConfigError([ConfigProblem(name, line, "", str(exc.problem))]) from exc
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


def _read(file: Path, name: str) -> str:
    """The text of ``file``: at most ``MAX_BYTES`` of UTF-8 that YAML can hold."""
    try:
        if is_device(file):  # opening one may block (a terminal) or act (a watchdog)
            raise ConfigError([ConfigProblem(name, None, "", "a device, not a file")])
        with file.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)  # not more: a pipe may be endless
    except OSError as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"cannot read: {exc.strerror}")]) from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError([ConfigProblem(name, 1, "", f"the file is larger than {MAX_BYTES // 2**20} MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([ConfigProblem(name, line, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")]) from exc
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise ConfigError([ConfigProblem(name, line, "", f"the character U+{ord(bad.group()):04X} is not allowed in YAML")])
    return text


def is_device(path: Path) -> bool:
    """Whether ``path`` is a character or block device (``/dev/zero``, ``/dev/tty``)."""
    mode = path.stat().st_mode
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


class _Refused(yaml.MarkedYAMLError):
    """A document refused for its size or a value that cannot be read; ``problem`` says why."""


if yaml.__with_libyaml__:  # libyaml's parser: several times faster than PyYAML's own

    class _Events(yaml.cyaml.CParser):
        pass

else:

    class _Events(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _Loader(Composer, _Events, SafeConstructor, Resolver):
    """PyYAML's safe loader, with limits checked while the document is composed.

    Each node's size (the values it holds once its aliases are expanded) and
    height are counted as it is built, so a deep or alias-expanded document is
    refused before anything recurses into it."""

    def __init__(self, text: str) -> None:
        _Events.__init__(self, text)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._aliased = 0
        self._extent: dict[int, tuple[int, int]] = {}  # id(node) -> (size, height), for finished nodes

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            extent = self._extent.get(id(node))
            if extent is None:
                raise _Refused(None, None, f"the alias *{event.anchor} is inside the value it names", event.start_mark)
            size, height = extent
            self._aliased += size
            if self._aliased > MAX_ALIASED:
                raise _Refused(None, None, f"aliases repeat more than {MAX_ALIASED} values in all", event.start_mark)
            if self._depth + height > MAX_DEPTH:
                raise _Refused(None, None, f"this alias nests values deeper than {MAX_DEPTH} levels", event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(None, None, f"values nest deeper than {MAX_DEPTH} levels", event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            self._extent[id(node)] = (1, 1)
        else:
            children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value
            extents = [self._extent[id(child)] for child in children]
            self._extent[id(node)] = (1 + sum(s for s, _ in extents), 1 + max((h for _, h in extents), default=0))
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # PyYAML's constructors let ValueError, KeyError, ... out on odd scalars
            # The value is not shown: it may be a secret (a password that looks like a date).
            tag = node.tag.rsplit(":", 1)[-1]
            reason = "" if isinstance(exc, KeyError) else f": {str(exc).split(';')[0]}"
            raise _Refused(None, None, f"cannot read this value as {tag}{reason}", node.start_mark) from exc


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
