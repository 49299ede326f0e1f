"""The YAML parser behind ``edged.yamlsource.load``: plain data straight from
the parser's events, with the file and line of every key path, refusing a
document that nests deeper than ``MAX_DEPTH`` or whose aliases repeat more
than ``MAX_ALIASED`` values as soon as it is read."""

from __future__ import annotations

import itertools
import types
from typing import Any, NamedTuple

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from edged.errors import ConfigError, ConfigProblem
from edged.yamlsource import MAX_ALIASED, MAX_DEPTH, KeyPath, SourceMap, format_path


def parse(text: str, name: str) -> tuple[Any, SourceMap]:
    """The data of the document ``text`` (read from the file ``name``) and its source map."""
    builder = _Builder(text, name)
    try:
        data = builder.document()
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
        builder.events.dispose()
    if builder.problems:
        raise ConfigError(builder.problems)
    return data, builder.sources


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


_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
_SCALARS = SafeConstructor.yaml_constructors


class _Built(NamedTuple):
    """A value with its size (values it holds, aliases expanded) and height (levels of nesting)."""

    value: Any
    size: int
    height: int


class _Builder:
    """Plain data straight from the parser's events, with the line of every key path.

    No node tree is built (it would take many times the memory of the data
    for a large file). Limits are checked as values are read, so a deep or
    alias-expanded document is refused before anything recurses into it; an
    anchored value keeps its size and height and the lines inside it, which
    an alias (or a ``<<`` merge) of it brings to its own place."""

    def __init__(self, text: str, file: str) -> None:
        self.events = _Events(text)
        self.file = file
        self.sources = SourceMap()
        self.problems: list[ConfigProblem] = []
        self._scalars = SafeConstructor()
        self._resolver = Resolver()
        self._anchors: dict[str, tuple[_Built, list[tuple[KeyPath, tuple[str, int]]]] | None] = {}
        self._aliased = 0

    def document(self) -> Any:
        events = self.events
        events.get_event()  # stream start
        if events.check_event(yaml.StreamEndEvent):
            return None
        events.get_event()  # document start
        built = self._value((), 0)
        events.get_event()  # document end
        if not events.check_event(yaml.StreamEndEvent):
            raise _Refused(None, None, "expected a single document", events.peek_event().start_mark)
        return built.value

    def _value(self, path: KeyPath, depth: int) -> _Built:
        event = self.events.get_event()
        if isinstance(event, yaml.AliasEvent):
            return self._alias(event, path, depth)
        if depth >= MAX_DEPTH:
            raise _Refused(None, None, f"values nest deeper than {MAX_DEPTH} levels", event.start_mark)
        lines = self.sources.lines
        lines.setdefault(path, (self.file, event.start_mark.line + 1))
        anchor = event.anchor
        if anchor is not None:
            self._anchors[anchor] = None  # being read: an alias of it now would be inside it
            first = len(lines)
        if isinstance(event, yaml.ScalarEvent):
            built = _Built(self._scalar(event), 1, 1)
        elif isinstance(event, yaml.MappingStartEvent):
            self._collection_tag(event, yaml.MappingNode, _MAP)
            built = self._mapping(path, depth)
        else:
            self._collection_tag(event, yaml.SequenceNode, _SEQ)
            built = self._sequence(path, depth)
        if anchor is not None:
            inside = [(key[len(path) :], where) for key, where in itertools.islice(lines.items(), first, None)]
            self._anchors[anchor] = (built, inside)
        return built

    def _alias(self, event: yaml.AliasEvent, path: KeyPath, depth: int) -> _Built:
        if event.anchor not in self._anchors:
            raise _Refused(None, None, f"the alias *{event.anchor} names no anchor (&{event.anchor}) before it", event.start_mark)
        anchored = self._anchors[event.anchor]
        if anchored is None:
            raise _Refused(None, None, f"the alias *{event.anchor} is inside the value it names", event.start_mark)
        built, inside = anchored
        self._aliased += built.size
        if self._aliased > MAX_ALIASED:
            raise _Refused(None, None, f"aliases repeat more than {MAX_ALIASED} values in all", event.start_mark)
        if depth + built.height > MAX_DEPTH:
            raise _Refused(None, None, f"this alias nests values deeper than {MAX_DEPTH} levels", event.start_mark)
        lines = self.sources.lines
        lines.setdefault(path, (self.file, event.start_mark.line + 1))
        for key, where in inside:
            lines.setdefault((*path, *key), where)
        return built

    def _scalar(self, event: yaml.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        construct = _SCALARS.get(tag) or _SCALARS[None]
        try:
            value = construct(self._scalars, node)
        except Exception as exc:  # PyYAML's constructors let ValueError, KeyError, ... out on odd scalars
            # The value is not shown: it may be a secret (a password that looks like a date).
            reason = "" if isinstance(exc, (KeyError, yaml.YAMLError)) else f": {str(exc).split(';')[0]}"
            raise _Refused(None, None, f"cannot read this value as {tag.rsplit(':', 1)[-1]}{reason}", event.start_mark) from exc
        if isinstance(value, types.GeneratorType):  # a collection's tag on a plain value
            raise _Refused(None, None, f"cannot read this value as {tag.rsplit(':', 1)[-1]}", event.start_mark)
        return value

    def _collection_tag(self, event: Any, kind: type[yaml.Node], expected: str) -> None:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolver.resolve(kind, None, event.implicit)
        if tag != expected:
            raise _Refused(None, None, f"the tag {event.tag} is not taken here", event.start_mark)

    def _mapping(self, path: KeyPath, depth: int) -> _Built:
        events, lines = self.events, self.sources.lines
        result: dict[Any, Any] = {}
        merged: list[dict[Any, Any]] = []
        size, height = 1, 0
        while not events.check_event(yaml.MappingEndEvent):
            key_event = events.peek_event()
            if not isinstance(key_event, yaml.ScalarEvent):
                raise _Refused(None, None, "a key must be a plain value, not a list or mapping", key_event.start_mark)
            key_line = key_event.start_mark.line + 1
            if depth + 1 >= MAX_DEPTH:  # a key is one level further in, like its value
                raise _Refused(None, None, f"values nest deeper than {MAX_DEPTH} levels", key_event.start_mark)
            if key_event.tag is None and key_event.value == "<<" and key_event.implicit[0]:
                events.get_event()
                built = self._merge(path, depth, merged)
            else:
                key = self._scalar(events.get_event())
                child = (*path, key_event.value)
                if key_event.value in result or key in result:
                    self.problems.append(ConfigProblem(self.file, key_line, format_path(child), "duplicate key"))
                lines[child] = (self.file, key_line)
                built = self._value(child, depth + 1)
                result[key] = built.value
            size += built.size
            height = max(height, built.height)
        events.get_event()
        if merged:  # explicit keys win over merged ones; of the merged mappings, the first named wins
            base: dict[Any, Any] = {}
            for mapping in reversed(merged):
                base.update(mapping)
            result = {**base, **result}
        return _Built(result, size, height + 1)

    def _merge(self, path: KeyPath, depth: int, merged: list[dict[Any, Any]]) -> _Built:
        """The value of a ``<<`` key: a mapping, or a list of them, whose keys this mapping
        takes (the lines of their keys are kept under this mapping's path)."""
        events = self.events
        start = events.peek_event().start_mark
        if events.check_event(yaml.SequenceStartEvent):
            events.get_event()
            parts = []
            while not events.check_event(yaml.SequenceEndEvent):
                parts.append(self._value(path, depth + 1))
            events.get_event()
        else:
            parts = [self._value(path, depth + 1)]
        mappings = [m for part in parts for m in (part.value if isinstance(part.value, list) else [part.value])]
        if not all(isinstance(mapping, dict) for mapping in mappings):
            raise _Refused(None, None, "<< merges a mapping or a list of mappings", start)
        merged.extend(mappings)
        return _Built(None, sum(p.size for p in parts), max((p.height for p in parts), default=0))

    def _sequence(self, path: KeyPath, depth: int) -> _Built:
        events = self.events
        result: list[Any] = []
        size, height = 1, 0
        while not events.check_event(yaml.SequenceEndEvent):
            built = self._value((*path, len(result)), depth + 1)
            result.append(built.value)
            size += built.size
            height = max(height, built.height)
        events.get_event()
        return _Built(result, size, height + 1)
