"""The table of devices that speak through manufacturer-specific frames.

``quirks.yaml`` beside this module is the built-in table (Tuya TS0601 data
points, Xiaomi/Aqara TLV tags); a ``quirks:`` file named in the
configuration has the same shape and its entries are tried first, so a
device the table lacks, or describes wrongly, is fixed without code. Every
entry is checked when it is loaded: a bad one is an error naming the file
and the entry, never a device that silently says nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from edged import yamlsource
from edged.errors import ConfigError, ConfigProblem
from edged.fields import Model
from edged.model import Value, ValueType

BUILT_IN = Path(__file__).with_name("quirks.yaml")
PointType = Literal["float", "int", "bool", "str"]


class Mapping(Model):
    """How one raw number becomes one point (and, if writable, back)."""

    key: str = Field(min_length=1)
    type: PointType = "float"
    unit: str | None = None
    scale: float = 1.0
    values: dict[int, str] | None = None  # an enum: raw number -> name
    true_when: int | None = None  # a bool: true for this raw number
    writable: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Mapping:
        if self.values is not None and self.type != "str":
            raise ValueError(f"{self.key}: an enum (values:) is of type str")
        if self.true_when is not None and self.type != "bool":
            raise ValueError(f"{self.key}: true_when goes with type bool")
        return self

    @property
    def value_type(self) -> ValueType:
        return ValueType(self.type)

    def convert(self, raw: int | bool | bytes | str) -> Value:
        """The point's value from the device's raw one."""
        if isinstance(raw, bytes | str):
            return raw.hex() if isinstance(raw, bytes) else raw
        if self.values is not None:
            return self.values.get(int(raw), str(int(raw)))
        if self.true_when is not None:
            return int(raw) == self.true_when
        if self.type == "bool":
            return bool(raw)
        if self.type == "int":
            return round(int(raw) * self.scale)
        digits = max(0, len(f"{self.scale:.6f}".rstrip("0").split(".")[1]))
        return round(int(raw) * self.scale, digits)

    def raw(self, value: Value) -> int:
        """The raw number to send for a written value; ``ValueError`` saying what is accepted."""
        if self.values is not None:
            for number, name in self.values.items():
                if value == name:
                    return number
            raise ValueError(f"{self.key} takes one of {', '.join(self.values.values())}; got {value!r}")
        if self.true_when is not None or self.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.key} takes true or false; got {value!r}")
            truth = self.true_when if self.true_when is not None else 1
            return truth if value else (0 if truth else 1)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.key} takes a number; got {value!r}")
        return round(value / self.scale)


class Datapoint(Mapping):
    dp: int = Field(ge=1, le=255)


class Tag(Mapping):
    tag: int = Field(ge=0, le=255)


class TuyaDevice(Model):
    description: str
    model: str = "TS0601"
    manufacturers: list[str] = Field(min_length=1)
    datapoints: list[Datapoint] = Field(min_length=1)


class XiaomiDevice(Model):
    description: str
    models: list[str] = Field(min_length=1)
    tags: list[Tag] = Field(min_length=1)


class Quirks(Model):
    tuya: list[TuyaDevice] = []
    xiaomi: list[XiaomiDevice] = []

    def tuya_for(self, manufacturer: str | None, model: str | None) -> TuyaDevice | None:
        return next((d for d in self.tuya if d.model == model and manufacturer in d.manufacturers), None)

    def xiaomi_for(self, model: str | None) -> XiaomiDevice | None:
        return next((d for d in self.xiaomi if model in d.models), None)

    def then(self, other: Quirks) -> Quirks:
        """These entries, then ``other``'s."""
        return Quirks(tuya=[*self.tuya, *other.tuya], xiaomi=[*self.xiaomi, *other.xiaomi])


def read(path: Path) -> Quirks:
    """One quirks file, read with the configuration's limits (size, nesting, aliases);
    ``ConfigError`` naming the file, the line, the entry and what is wrong."""
    data, sources = yamlsource.load(path)
    try:
        return Quirks.model_validate(data or {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = tuple(error["loc"])
            file, line = sources.locate(where, str(path))
            problems.append(ConfigProblem(file, line, ".".join(str(p) for p in where), error["msg"]))
        raise ConfigError(problems) from exc


def load(extra: str | None) -> Quirks:
    """The built-in table, after the entries of the configured ``quirks:`` file if there is one."""
    built_in = read(BUILT_IN)
    return built_in if extra is None else read(Path(extra)).then(built_in)
