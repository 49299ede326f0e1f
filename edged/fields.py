"""Field types shared by every configuration model.

``Model`` is the base of all config models: unknown keys are errors and
models are frozen, so a validated configuration cannot drift. ``Duration``
takes ``250ms``, ``5s``, ``10m``, ``1h`` or a number of seconds. ``Secret``
takes ``{env: NAME}``, ``{file: PATH}``, ``{credential: NAME}`` (a systemd
credential, read from ``$CREDENTIALS_DIRECTORY``) or an inline string;
``FilePath`` is a path without NUL (which no system call takes);
``holds_secret`` tells where in a model a secret is, so that no error
message shows one.

``DeviceId`` and ``Key`` are the names a configuration gives its devices and
their points: letters, digits and ``_ . : -``, so that they stand unquoted in
MQTT topics, URLs and rule expressions. ``DeclaredDevice`` is the base of a
device an adapter's configuration declares; ``distinct`` refuses values
of which two are the same, and ``unique`` a list that gives two of its
items the same id, key or name.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, SecretStr

from edged.yamlsource import is_device

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_SECRET_BYTES = 65536  # a secret file larger than this is a mistake (or not a file: /dev/zero)


def _no_nul(value: Path) -> Path:
    if "\0" in str(value):
        raise ValueError("a path cannot contain the character NUL")
    return value


FilePath = Annotated[Path, AfterValidator(_no_nul)]  # a path the operating system can take


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def name_check(what: str) -> Callable[[str], str]:
    """A validator of ``what`` (e.g. "a device id"): letters, digits and ``_ . : -``, at least one."""

    def check(value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"expected {what} of letters, digits and _ . : - only (no spaces or slashes); got {value!r}")
        return value

    return check


DeviceId = Annotated[str, AfterValidator(name_check("a device id"))]
Key = Annotated[str, AfterValidator(name_check("a point key"))]


class DeclaredDevice(Model):
    """What every device declared in an adapter's configuration has: an id
    (unique within the adapter; the Hub knows it as ``<adapter>/<id>``) and
    an optional name to show instead."""

    id: DeviceId
    name: str | None = None


def distinct(values: Iterable[Hashable], items: str, field: str) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that comes twice:
    "two points share the key 'power'; give each a distinct key"."""
    seen: set[Hashable] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"two {items} share the {field} {value!r}; give each a distinct {field}:")
        seen.add(value)


def unique(attribute: str, items: str, field: str | None = None) -> AfterValidator:
    """The check of a list whose ``items`` must differ in ``attribute`` (shown as ``field``):
    ``points: Annotated[list[PointConfig], unique("key", "points")]``."""

    def check(values: list[Any]) -> list[Any]:
        distinct((getattr(value, attribute) for value in values), items, field or attribute)
        return values

    return AfterValidator(check)


def parse_duration(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 5s, 2m or 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("expected a duration such as 500ms, 5s, 2m or 1h")


def resolve_secret(value: Any) -> Any:
    # The messages never show the value: it may be the secret itself.
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict) and len(value) == 1:
        ((source, name),) = value.items()
        if source in ("env", "file", "credential") and (not isinstance(name, str) or not name or "\0" in name):
            raise ValueError(f"expected {{{source}: NAME}} with a NAME that is a non-empty string")
        if source == "env":
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return SecretStr(os.environ[name])
        if source in ("file", "credential"):
            if source == "credential":
                directory = os.environ.get("CREDENTIALS_DIRECTORY")
                if not directory:
                    raise ValueError(f"credential {name!r} asked for, but $CREDENTIALS_DIRECTORY is not set")
                return _read_secret(Path(directory) / name)
            return _read_secret(Path(name))
    raise ValueError("expected a string, {env: NAME}, {file: PATH} or {credential: NAME}")


def _read_secret(path: Path) -> SecretStr:
    try:
        if is_device(path):
            raise ValueError(f"secret file {path} is a device, not a file")
        with path.open("rb") as stream:
            raw = stream.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
    if len(raw) > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {path} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        return SecretStr(raw.decode("utf-8").strip())
    except UnicodeDecodeError as exc:
        raise ValueError(f"secret file {path} is not UTF-8 text") from exc


def holds_secret(annotation: Any, loc: Sequence[str | int]) -> bool:
    """Whether the value at ``loc`` (keys and list indexes) in a value of type
    ``annotation`` is a secret; where a union allows several types, whether any does."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return holds_secret(args[0], loc)
    if origin in (Union, types.UnionType):
        return any(holds_secret(arg, loc) for arg in args)
    if not loc:
        return isinstance(annotation, type) and issubclass(annotation, SecretStr)
    part, rest = loc[0], loc[1:]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return holds_secret(info.annotation, rest)
        return False
    if isinstance(origin, type) and issubclass(origin, Mapping):
        return len(args) == 2 and holds_secret(args[1], rest)
    if isinstance(origin, type) and issubclass(origin, (Sequence, set, frozenset)) and not issubclass(origin, str):
        return any(holds_secret(arg, rest) for arg in args if arg is not Ellipsis)
    return False


Duration = Annotated[float, BeforeValidator(parse_duration)]
Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
