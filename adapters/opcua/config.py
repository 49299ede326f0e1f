"""Configuration of the OPC UA adapter (pydantic only; asyncua is not imported here).

One adapter instance talks to one server (``endpoint``). Its ``devices`` group
the server's nodes into edged devices; every node becomes one point. A node
is named by NodeId (``nsu=urn:plant;s=Boiler.Temp``, ``ns=2;i=1001``) or by a
browse path from the Root folder (``0:Objects/nsu=urn:plant;Boiler/2:Temp``);
see address.py for the forms. Nodes are
subscribed to by default; a node with ``poll:`` is read at that interval,
together with every other node of the same interval in one Read request.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edged.adapter import AdapterConfig
from edged.adapters.opcua.address import BrowsePath, NodeAddress, namespace_indexes
from edged.fields import DeclaredDevice, DeviceId, Duration, FilePath, Key, Model, Secret, distinct, unique
from edged.model import ValueType


class Deadband(Model):
    """Report a change only when it exceeds ``value`` (absolute units, or percent of the EURange)."""

    type: Literal["absolute", "percent"] = "absolute"
    value: float = Field(gt=0)

    @model_validator(mode="after")
    def _percent_range(self) -> Deadband:
        if self.type == "percent" and self.value > 100:
            raise ValueError(f"a percent deadband is at most 100; got {self.value:g}")
        return self


class SubscriptionSettings(Model):
    """Defaults for subscribed nodes; a node may override the per-item ones."""

    publishing_interval: Duration = Field(0.5, gt=0)
    sampling_interval: Duration = Field(0.25, ge=0)  # 0 asks the server for its fastest rate
    queue_size: int = Field(1, ge=1, le=10_000)
    keepalive_count: int = Field(10, ge=1)
    lifetime_count: int = Field(100, ge=3)
    max_notifications: int = Field(10_000, ge=0)  # per publish; 0 means no limit


class NodeConfig(Model):
    key: Key
    node: str | None = None
    path: str | None = None
    type: ValueType = ValueType.FLOAT
    unit: str | None = None
    writable: bool = False
    # The node is a Method: a command on the point calls it on its object with the value (of the
    # point's type) as its argument, or with none if the method takes none; the point is
    # writable, is not read, and shows the value it was last called with.
    method: bool = False
    name: str | None = None
    poll: Duration | None = Field(None, gt=0)
    publishing_interval: Duration | None = Field(None, gt=0)
    sampling_interval: Duration | None = Field(None, ge=0)
    queue_size: int | None = Field(None, ge=1, le=10_000)
    deadband: Deadband | None = None

    @field_validator("node")
    @classmethod
    def _node_id(cls, value: str | None) -> str | None:
        if value is not None:
            NodeAddress.parse(value)
        return value

    @field_validator("path")
    @classmethod
    def _browse_path(cls, value: str | None) -> str | None:
        return None if value is None else str(BrowsePath.parse(value))

    @model_validator(mode="after")
    def _one_address(self) -> NodeConfig:
        if (self.node is None) == (self.path is None):
            raise ValueError("give exactly one of node (a NodeId) or path (a browse path):")
        if self.poll is not None and (self.deadband or self.publishing_interval or self.sampling_interval is not None):
            raise ValueError("a polled node takes no subscription settings (deadband, publishing/sampling interval):")
        if self.method and (self.poll is not None or self.deadband or self.publishing_interval
                            or self.sampling_interval is not None or self.queue_size is not None):  # fmt: skip
            raise ValueError("a method is called, not read: it takes no poll or subscription settings:")
        return self

    @property
    def commandable(self) -> bool:
        return self.writable or self.method

    @property
    def address(self) -> str:
        return self.node or f"path {self.path}"

    @property
    def location(self) -> NodeAddress | BrowsePath:
        """The parsed ``node`` or ``path``."""
        return NodeAddress.parse(self.node) if self.node is not None else BrowsePath.parse(self.path or "")


class DeviceConfig(DeclaredDevice):
    manufacturer: str | None = None
    model: str | None = None
    nodes: Annotated[list[NodeConfig], unique("key", "nodes")] = Field(min_length=1)


# The points of an events device: the last event as JSON text, and its main fields.
EVENT_POINTS = {"event": ValueType.STR, "severity": ValueType.INT, "message": ValueType.STR, "active": ValueType.BOOL}
# Writable points of an events device: a command with an alarm's event id (hex) acknowledges or confirms it.
EVENT_COMMANDS = ("acknowledge", "confirm")


class EventsConfig(Model):
    """Events of one source node (default the Server object) as the points of one device.

    ``types`` are event type NodeIds (default BaseEventType, i=2041; AlarmConditionType is
    i=2915); events below ``min_severity`` (1..1000) are dropped. Each event is also a device
    event (to the uplink and to rules), at most ``max_rate`` a second on average."""

    device: DeviceId
    name: str | None = None
    source: str = "i=2253"
    types: list[str] = Field(default_factory=lambda: ["i=2041"], min_length=1)
    min_severity: int = Field(0, ge=0, le=1000)
    max_rate: float = Field(10.0, gt=0)  # device events a second, on average; more are counted, not sent

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        _source_location(value)
        return value

    @field_validator("types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for item in value:
            NodeAddress.parse(item)
        return value

    @property
    def location(self) -> NodeAddress | BrowsePath:
        """The parsed ``source``."""
        return _source_location(self.source)


def _source_location(text: str) -> NodeAddress | BrowsePath:
    """A NodeId, else a browse path from the Root folder."""
    try:
        return NodeAddress.parse(text)
    except ValueError:
        pass
    try:
        return BrowsePath.parse(text)
    except ValueError:
        raise ValueError(f"expected a NodeId such as i=2253 or a browse path such as 0:Objects/0:Server; got {text!r}") from None


SecurityPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep"]


class SecurityConfig(Model):
    """Message security. The client certificate's SubjectAltName must hold
    ``application_uri`` (``edged opcua cert`` makes such a pair)."""

    policy: SecurityPolicy = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: FilePath | None = None
    private_key: FilePath | None = None
    private_key_password: Secret | None = None
    application_uri: str = "urn:edged:client"
    # Trust: pin the server's certificate, and/or check it against a folder of trusted
    # certificates (the server's own or its CA's), or accept whatever it presents.
    server_certificate: FilePath | None = None
    trusted_certificates: FilePath | None = None
    trust_any_server: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        if self.policy == "None":
            if self.mode != "None":
                raise ValueError(f"mode {self.mode} needs a security policy other than None:")
            return self
        if self.mode == "None":
            raise ValueError(f"policy {self.policy} needs mode Sign or SignAndEncrypt:")
        if self.certificate is None or self.private_key is None:
            raise ValueError(
                f"policy {self.policy} needs certificate and private_key (make them with `edged opcua cert`):"
            )
        if self.server_certificate is None and self.trusted_certificates is None and not self.trust_any_server:
            raise ValueError(
                "name the server's certificate in server_certificate or a folder of trusted certificates in "
                "trusted_certificates, or set trust_any_server: true to accept the one it presents:"
            )
        return self


class ReconnectSettings(Model):
    initial: Duration = Field(1.0, gt=0)
    maximum: Duration = Field(30.0, gt=0)


class OpcuaConfig(AdapterConfig):
    type: Literal["opcua"]
    endpoint: str = Field(pattern=r"^opc\.tcp://[^/\s]+")
    security: SecurityConfig = SecurityConfig()
    username: str | None = None
    password: Secret | None = None
    timeout: Duration = Field(4.0, gt=0)  # per request
    keepalive: Duration = Field(1.0, gt=0)  # how often a quiet session is probed
    session_timeout: Duration = Field(60.0, gt=0)
    reconnect: ReconnectSettings = ReconnectSettings()
    subscription: SubscriptionSettings = SubscriptionSettings()
    devices: list[DeviceConfig] = Field(min_length=1)
    events: list[EventsConfig] = []

    def declared_points(self) -> dict[str, dict[str, bool]]:
        points = {f"{self.instance}/{d.id}": {n.key: n.commandable for n in d.nodes} for d in self.devices}
        for events in self.events:
            points[f"{self.instance}/{events.device}"] = dict.fromkeys(EVENT_POINTS, False) | dict.fromkeys(
                EVENT_COMMANDS, True
            )
        return points

    def advice(self) -> list[str]:
        """One line per namespace index (other than 0) that nodes name by number: the nsu= form is safer."""
        where: dict[int, list[tuple[str, NodeConfig]]] = {}
        for d, device in enumerate(self.devices):
            for n, node in enumerate(device.nodes):
                for index in sorted(namespace_indexes([node.location])):
                    where.setdefault(index, []).append((f"devices[{d}].nodes[{n}]", node))
        lines = []
        for index, uses in sorted(where.items()):
            key, node = uses[0]
            field = "node" if node.node is not None else "path"
            example = _by_uri(node.location, index)
            lines.append(
                f"{key}.{field}: {len(uses)} node(s) name namespace {index} by its index, which the server may "
                f"renumber when it restarts; name it by URI instead, e.g. {example!r} for {node.node or node.path!r} "
                f"(the URI is the server's NamespaceArray[{index}]; see docs/opcua.md)"
            )
        return lines

    @model_validator(mode="after")
    def _checks(self) -> OpcuaConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together; give both or neither:")
        distinct([*(d.id for d in self.devices), *(e.device for e in self.events)], "devices", "id")
        return self


def _by_uri(location: NodeAddress | BrowsePath, index: int) -> str:
    """``location`` with namespace ``index`` written as ``nsu=<URI of namespace N>``."""
    placeholder = f"<URI of namespace {index}>"
    if isinstance(location, NodeAddress):
        return f"nsu={placeholder};{location.identifier}"
    return "/".join(
        f"nsu={placeholder};{e.name}" if e.namespace == index else str(e) for e in location.elements
    )
