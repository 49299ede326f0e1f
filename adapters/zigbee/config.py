"""Configuration of the Zigbee adapter (``type: zigbee``).

Validating it imports nothing of zigpy: only pydantic and edged's fields.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from edged.adapter import AdapterConfig
from edged.fields import Duration, Model, Secret

Radio = Literal["znp", "ezsp", "deconz", "xbee", "zigate", "simulated"]
SimulatedKind = Literal["climate", "motion", "contact", "water_leak", "lamp", "plug"]

PERMIT_MAX_SECONDS = 254  # Mgmt_Permit_Joining's longest (255 would mean "for ever")
_IEEE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){7}$")


def _eui64(what: str) -> AfterValidator:
    """The check of ``what`` (e.g. "an IEEE address"): 8 bytes in hex, colon-separated."""

    def check(value: str) -> str:
        if not _IEEE.match(value):
            raise ValueError(f"expected {what} of 8 hex bytes such as 00:12:4b:00:1c:a1:b2:c3; got {value!r}")
        return value

    return AfterValidator(check)


class SerialPort(Model):
    path: str = Field(min_length=1)  # /dev/ttyACM0, /dev/serial/by-id/..., socket://host:port
    baudrate: int = Field(115200, gt=0)
    flow_control: Literal["hardware", "software"] | None = None


class Network(Model):
    """Settings used only when a new network is formed; unset ones are chosen at random."""

    channel: int | None = Field(None, ge=11, le=26)
    channels: list[int] = Field(default_factory=lambda: [11, 15, 20, 25], min_length=1)
    pan_id: int | None = Field(None, ge=0x0001, le=0xFFFE)
    extended_pan_id: Annotated[str, _eui64("an extended PAN id")] | None = None
    key: Secret | None = None  # 16 bytes as 32 hex digits

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[int]) -> list[int]:
        bad = [c for c in value if not 11 <= c <= 26]
        if bad:
            raise ValueError(f"expected channels between 11 and 26; got {bad}")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", value.get_secret_value().replace(":", "")):
            raise ValueError("expected a network key of 16 bytes as 32 hex digits")
        return value


class Silence(Model):
    """How long a device may stay silent before it is marked offline, and how mains devices are pinged.

    A mains-powered device silent for ``ping_after`` is pinged (a Basic
    cluster read); ``failed_pings`` unanswered pings in a row mark it offline.
    Battery devices sleep and cannot be pinged: they keep ``battery``."""

    mains: Duration = Field(2 * 3600.0, gt=0)
    battery: Duration = Field(6 * 3600.0, gt=0)
    ping_after: Duration = Field(600.0, ge=0)  # 0: mains devices are never pinged
    failed_pings: int = Field(3, ge=1, le=100)


class PermitJoin(Model):
    default: int = Field(60, ge=1, le=PERMIT_MAX_SECONDS)  # seconds, when the API or CLI gives none
    on_start: int = Field(0, ge=0, le=PERMIT_MAX_SECONDS)  # open the network for this long at every start


class Reporting(Model):
    """Attribute reporting asked of every device on join."""

    min_interval: int = Field(1, ge=0, le=0xFFFE)  # seconds
    max_interval: int = Field(900, ge=1, le=0xFFFE)

    @model_validator(mode="after")
    def _order(self) -> Reporting:
        if self.max_interval < self.min_interval:
            raise ValueError("max_interval must not be below min_interval")
        return self


class SimulatedDevice(Model):
    kind: SimulatedKind
    ieee: Annotated[str, _eui64("an IEEE address")] | None = None  # derived from the position in the list when unset
    name: str | None = None


def _demo_devices() -> list[SimulatedDevice]:
    return [SimulatedDevice(kind="motion"), SimulatedDevice(kind="lamp"), SimulatedDevice(kind="plug")]


class SimulatedRadio(Model):
    """The in-process radio (``radio: simulated``): devices join when joining is permitted."""

    devices: list[SimulatedDevice] = Field(default_factory=_demo_devices)
    report_interval: Duration = Field(10.0, ge=0)  # 0: devices report only on change


class ZigbeeConfig(AdapterConfig):
    type: Literal["zigbee"]
    radio: Radio
    serial: SerialPort | None = None
    network: Network = Network()
    silence: Silence = Silence()
    permit_join: PermitJoin = PermitJoin()
    reporting: Reporting = Reporting()
    backup_interval: Duration = Field(24 * 3600.0, ge=60)  # zigpy network backup period
    simulated: SimulatedRadio | None = None

    @model_validator(mode="after")
    def _radio_needs(self) -> ZigbeeConfig:
        if self.radio == "simulated":
            if self.serial is not None:
                raise ValueError("radio 'simulated' takes no serial port")
        else:
            if self.serial is None:
                raise ValueError(f"radio {self.radio!r} needs serial: {{path: ..., baudrate: ...}}")
            if self.simulated is not None:
                raise ValueError("'simulated' settings apply only to radio: simulated")
        return self

    @property
    def simulation(self) -> SimulatedRadio:
        return self.simulated or SimulatedRadio()
