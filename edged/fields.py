"""Field types shared by every configuration model.

``Model`` is the base of all config models: unknown keys are errors and
models are frozen, so a validated configuration cannot drift. ``Duration``
takes ``250ms``, ``5s``, ``10m``, ``1h`` or a number of seconds. ``Secret``
takes ``{env: NAME}``, ``{file: PATH}``, ``{credential: NAME}`` (a systemd
credential, read from ``$CREDENTIALS_DIRECTORY``) or an inline string.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict) and len(value) == 1:
        ((source, name),) = value.items()
        if source == "env":
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return SecretStr(os.environ[name])
        if source in ("file", "credential"):
            if source == "credential":
                directory = os.environ.get("CREDENTIALS_DIRECTORY")
                if not directory:
                    raise ValueError(f"credential {name!r} asked for, but $CREDENTIALS_DIRECTORY is not set")
                path = Path(directory) / str(name)
            else:
                path = Path(str(name))
            try:
                return SecretStr(path.read_text().strip())
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
    raise ValueError("expected a string, {env: NAME}, {file: PATH} or {credential: NAME}")


Duration = Annotated[float, BeforeValidator(parse_duration)]
Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
