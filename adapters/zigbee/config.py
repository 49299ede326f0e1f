"""Configuration of the Zigbee adapter (``type: zigbee``).

Validating it imports nothing of zigpy: only pydantic and edged's fields.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from edged.adapter import AdapterConfig
from edged.adapters.zigbee import quirks as quirk_table
from edged.errors import ConfigError
from edged.fields import Duration, Model, Secret

Radio = Literal["znp", "ezsp", "deconz", "xbee", "zigate", "simulated"]
SimulatedKind = Literal[
    "climate", "motion", "contact", "water_leak", "lamp", "plug", "remote", "tuya_climate", "tuya_trv", "aqara_weather",
]

PERMIT_MAX_SECONDS = 254  # Mgmt_Permit_Joining's longest (255 would mean "for ever")
GROUP_ID_MAX = 0xFFF7  # above are reserved group addresses
GROUP_NAME_MAX = 16  # the Groups cluster's name field
_IEEE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){7}$")
_ENDPOINT_ADDRESS = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){7}(/\d{1,3})?$")

# Cluster names a binding takes (``cluster: on_off``), by cluster id.
BIND_CLUSTERS: dict[str, int] = {
    "on_off": 0x0006,
    "level": 0x0008,
    "scenes": 0x0005,
    "color": 0x0300,
    "window_covering": 0x0102,
}
BindCluster = Literal["on_off", "level", "scenes", "color", "window_covering"]


def _eui64(what: str) -> AfterValidator:
    """The check of ``what`` (e.g. "an IEEE address"): 8 bytes in hex, colon-separated."""

    def check(value: str) -> str:
        if not _IEEE.match(value):
            raise ValueError(f"expected {what} of 8 hex bytes such as 00:12:4b:00:1c:a1:b2:c3; got {value!r}")
        return value

    return AfterValidator(check)


def _endpoint_address(value: str) -> str:
    if not _ENDPOINT_ADDRESS.match(value):
        raise ValueError(f"expected an IEEE address, optionally with /endpoint, such as 00:12:4b:00:1c:a1:b2:c3/1; got {value!r}")
    return value


EndpointAddress = Annotated[str, AfterValidator(_endpoint_address)]


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
    lqi: int = Field(200, ge=0, le=255)  # the link quality between it and the coordinator


def _demo_devices() -> list[SimulatedDevice]:
    return [SimulatedDevice(kind="motion"), SimulatedDevice(kind="lamp"), SimulatedDevice(kind="plug")]


class SimulatedRadio(Model):
    """The in-process radio (``radio: simulated``): devices join when joining is permitted."""

    devices: list[SimulatedDevice] = Field(default_factory=_demo_devices)
    report_interval: Duration = Field(10.0, ge=0)  # 0: devices report only on change


class Group(Model):
    """A Zigbee group the gateway keeps: its members get the group's multicast commands."""

    id: int = Field(ge=1, le=GROUP_ID_MAX)
    name: str = Field(min_length=1, max_length=GROUP_NAME_MAX)
    members: list[EndpointAddress] = []  # "<ieee>" (first endpoint with a Groups cluster) or "<ieee>/<endpoint>"


class Binding(Model):
    """A device's cluster bound to another device or a group: its commands go there directly."""

    source: EndpointAddress  # the sending device (a remote, a switch)
    target: str = Field(min_length=1)  # an IEEE address (optionally /endpoint) or the name of a group above
    cluster: BindCluster = "on_off"


class Topology(Model):
    """The network map: how often zigpy scans neighbour and routing tables, and what counts as a weak link."""

    scan_interval: Duration = Field(4 * 3600.0, ge=0)  # 0: only when asked (edged zigbee map --scan)
    weak_lqi: int = Field(80, ge=0, le=255)  # a link heard with a lower LQI is flagged weak


class Ota(Model):
    """Firmware updates from local files only: the gateway downloads nothing.

    ``folder`` holds ``.ota``/``.zigbee`` images (each names its manufacturer,
    image type and version in its header); ``index`` is a Zigbee2MQTT-style
    index file whose entries give each image's ``path`` relative to it. With
    neither, devices are never offered an image."""

    folder: str | None = None
    index: str | None = None
    auto_update: bool = False  # update every device a newer image fits, without being asked
    check_interval: Duration = Field(24 * 3600.0, gt=0)  # how often auto_update looks for images


class ZigbeeConfig(AdapterConfig):
    type: Literal["zigbee"]
    radio: Radio
    serial: SerialPort | None = None
    network: Network = Network()
    silence: Silence = Silence()
    permit_join: PermitJoin = PermitJoin()
    reporting: Reporting = Reporting()
    backup_interval: Duration = Field(24 * 3600.0, ge=60)  # zigpy network backup period
    topology: Topology = Topology()
    ota: Ota = Ota()
    simulated: SimulatedRadio | None = None
    groups: list[Group] = []
    bindings: list[Binding] = []
    quirks: str | None = None  # a file of Tuya/Xiaomi device entries, tried before the built-in table

    @field_validator("quirks")
    @classmethod
    def _quirks_file(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                quirk_table.read(Path(value))
            except ConfigError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _groups_and_bindings(self) -> ZigbeeConfig:
        for what in ("id", "name"):
            seen = [getattr(g, what) for g in self.groups]
            twice = sorted({str(v) for v in seen if seen.count(v) > 1})
            if twice:
                raise ValueError(f"groups: each group needs its own {what}; {', '.join(twice)} given more than once")
        names = {g.name for g in self.groups}
        for binding in self.bindings:
            if not _ENDPOINT_ADDRESS.match(binding.target) and binding.target not in names:
                raise ValueError(
                    f"bindings: target {binding.target!r} is neither an IEEE address nor a group name "
                    f"(groups: {', '.join(sorted(names)) or 'none'})"
                )
        return self

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
