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
    """The plain data of the YAML file ``file`` and where each value came from; ``ConfigError``
    with the file and line when it cannot be read or is refused."""
    name = str(file)
    text = _read(file, name)
    from edged.yamlparse import parse  # the YAML parser, only in the process that reads a file

    return parse(text, name)


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
