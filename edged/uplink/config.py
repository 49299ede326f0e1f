"""``uplink:`` section: one cloud connection, picked by ``type: mqtt | coap``.

Only pydantic and the standard library are imported here, so validating a
configuration never imports an MQTT or CoAP stack.
"""

from __future__ import annotations

import string
from collections.abc import Collection
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, ByteSize, Discriminator, Field, Tag, field_validator, model_validator

from edged.fields import Duration, FilePath, Model, Secret, name_check
from edged.uplink.topic import matches, mqtt_string, topic_filter, topic_name


def _check_template(template: str, allowed: Collection[str], required: Collection[str] = (), subscribed: bool = False) -> str:
    """A topic template: its ``{placeholders}`` are known, and it is a topic (a filter
    if it is ``subscribed`` to) once they are filled in with values that are topic levels."""
    mqtt_string(template)
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"bad topic template {template!r}: {exc}") from exc
    for name, spec, conversion in fields:
        if spec or conversion:
            raise ValueError(f"a placeholder takes no format spec or conversion: write {{{name}}}")
    names = {name for name, _, _ in fields}
    unknown = names - set(allowed)
    if unknown:
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; expected any of {', '.join(sorted(allowed))}")
    missing = set(required) - names
    if missing:
        raise ValueError(f"the template must contain {{{sorted(missing)[0]}}}")
    return topic_filter(template) if subscribed else topic_name(template)


class TlsConfig(Model):
    """TLS towards the broker: ``ca`` to trust it, ``cert`` + ``key`` to prove who we are."""

    ca: FilePath | None = None  # default: the system's trusted CAs
    cert: FilePath | None = None
    key: FilePath | None = None
    insecure: bool = False  # skip the host name check (never in production)

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together: give both or neither")
        return self


class HomeAssistantConfig(Model):
    """MQTT discovery for Home Assistant (see edged/uplink/homeassistant.py)."""

    discovery_prefix: str = "homeassistant"

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or "#" in value or "+" in value or value.endswith("/"):
            raise ValueError("expected a topic prefix such as homeassistant, without wildcards or a trailing /")
        return topic_name(value)


class SparkplugConfig(Model):
    """``sparkplug:`` of an MQTT uplink with ``profile: sparkplug_b`` (Sparkplug 3.0)."""

    group_id: str  # the Sparkplug group this edge node belongs to
    edge_node_id: str | None = None  # default: the gateway id
    primary_host_id: str | None = None  # hold data (as historical) while this host application is offline

    @field_validator("group_id", "edge_node_id", "primary_host_id")
    @classmethod
    def _sparkplug_id(cls, value: str | None) -> str | None:
        """A Sparkplug id is one topic level: not empty, without ``/``, ``+`` or ``#``."""
        if value is None:
            return value
        if not value or any(char in value for char in "/+#"):
            raise ValueError(f"expected a non-empty id without '/', '+' or '#'; got {value!r}")
        return mqtt_string(value)


class ThingsboardConfig(Model):
    """``thingsboard:`` of an MQTT uplink with ``profile: thingsboard`` (the ThingsBoard gateway MQTT API).
    The device access token is the MQTT ``username``; X.509 authentication uses ``tls``."""

    # The device profile ThingsBoard gives every device (``type`` of its connect message);
    # default: the name of the adapter the device belongs to (``modbus``, ``sim``, ...).
    device_type: str | None = Field(None, min_length=1, max_length=256)


UplinkName = Annotated[str, AfterValidator(name_check("an uplink name"))]


class _Lanes(Model):
    # Its name among several (``uplinks:``); default: its type, when it is the only one of that type.
    name: UplinkName | None = None
    inflight: int = Field(64, ge=1, le=10_000)  # messages published and not yet acknowledged
    backfill_rate: int = Field(0, ge=0)  # readings/s for the backlog after an outage; 0 = as fast as it goes
    # A message the cloud refuses for good (too large, malformed) is tried this often, then dead-lettered.
    max_attempts: int = Field(3, ge=1, le=100)


class MqttUplinkConfig(_Lanes):
    type: Literal["mqtt"]
    # The shape of the messages: edged's own JSON topics, Sparkplug B, or the ThingsBoard gateway API.
    profile: Literal["edged", "sparkplug_b", "thingsboard"] = "edged"
    sparkplug: SparkplugConfig | None = None
    thingsboard: ThingsboardConfig | None = None
    host: str
    port: int = Field(1883, ge=1, le=65535)
    protocol: Annotated[Literal["3.1.1", "5"], BeforeValidator(lambda v: str(v) if isinstance(v, (int, float)) else v)] = (
        "3.1.1"
    )
    client_id: str | None = None  # default: the gateway id
    username: Secret | None = None  # a ThingsBoard access token is a secret: {env: NAME} and {file: PATH} work too
    password: Secret | None = None
    tls: TlsConfig | None = None
    keepalive: Duration = 60.0
    clean_session: bool = True
    connect_timeout: Duration = 10.0
    qos: Literal[1, 2] = 1
    max_message_bytes: ByteSize | None = Field(None, ge=256)  # larger reading messages are split
    prefix: str = "edged/{gateway}"
    # Readings: without {point} one message per device per commit (a JSON batch);
    # with {point} one message per reading.
    topic: str = "{prefix}/data/{device}"
    status_topic: str = "{prefix}/status"  # retained "online"; Last Will "offline"
    event_topic: str = "{prefix}/events/{event}"
    command_topic: str = "{prefix}/commands"
    result_topic: str = "{prefix}/commands/result"
    homeassistant: HomeAssistantConfig | None = None  # announce every point to Home Assistant

    @model_validator(mode="after")
    def _profile_settings(self) -> MqttUplinkConfig:
        if self.profile == "sparkplug_b" and self.sparkplug is None:
            raise ValueError("profile: sparkplug_b needs a sparkplug: section with at least group_id:")
        if self.profile != "sparkplug_b" and self.sparkplug is not None:
            raise ValueError("sparkplug: is read only with profile: sparkplug_b:")
        if self.profile != "thingsboard" and self.thingsboard is not None:
            raise ValueError("thingsboard: is read only with profile: thingsboard:")
        if self.profile != "edged" and self.homeassistant is not None:
            raise ValueError("homeassistant: discovery goes with profile: edged; give Home Assistant an uplink of its own:")
        return self

    @model_validator(mode="after")
    def _discovery_needs_a_topic_per_point(self) -> MqttUplinkConfig:
        if self.homeassistant is not None and "{point}" not in self.topic:
            raise ValueError(
                "Home Assistant reads one message per reading: put {point} in topic, e.g. '{prefix}/{device}/{point}':"
            )
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_template(value, {"gateway"})

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_template(value, {"prefix", "gateway", "device", "point"}, {"device"})

    @field_validator("event_topic")
    @classmethod
    def _event_topic(cls, value: str) -> str:
        return _check_template(value, {"prefix", "gateway", "event"})

    @field_validator("status_topic", "result_topic")
    @classmethod
    def _fixed_topic(cls, value: str) -> str:
        return _check_template(value, {"prefix", "gateway"})

    @field_validator("command_topic")
    @classmethod
    def _command_topic(cls, value: str) -> str:
        return _check_template(value, {"prefix", "gateway"}, subscribed=True)  # wildcards as whole levels

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        return value if value is None else mqtt_string(value)

    @model_validator(mode="after")
    def _discovery_publishes_commands(self) -> MqttUplinkConfig:
        if self.homeassistant is not None and ("+" in self.command_topic or "#" in self.command_topic):
            raise ValueError("Home Assistant publishes commands to command_topic, so it cannot contain the wildcards + or #:")
        return self

    @model_validator(mode="after")
    def _commands_are_not_echoed(self) -> MqttUplinkConfig:
        """A command topic with wildcards must not take in what the gateway publishes: a
        result there would be read as a command, answered with a result, and so on."""
        if "+" not in self.command_topic and "#" not in self.command_topic:
            return self
        published = {"topic": self.topic, "event_topic": self.event_topic, "result_topic": self.result_topic,
                     "status_topic": self.status_topic, "status_topic (a device's)": self.status_topic + "/{device}"}  # fmt: skip
        prefix = self.prefix.format(gateway="gw")
        command_filter = self.command_topic.format(prefix=prefix, gateway="gw")
        for name, template in published.items():
            for level in ("x", "x/y"):  # device ids, point keys and event names fill one level or more
                topic = template.format(prefix=prefix, gateway="gw", device=level, point=level, event=level)
                if matches(command_filter, topic):
                    raise ValueError(
                        f"command_topic {self.command_topic!r} would receive what the gateway publishes to {name} "
                        f"({template!r}); move one of them:"
                    )
        return self


class CoapUplinkConfig(_Lanes):
    type: Literal["coap"]
    profile: Literal["edged"] = "edged"  # readings as SenML CBOR, events as CBOR maps
    uri: str  # coaps://host:port/path; readings are POSTed here as SenML CBOR
    event_uri: str | None = None  # events go here (default: uri)
    command_uri: str | None = None  # observed: each representation is a cloud command (CBOR or JSON)
    result_uri: str | None = None  # command results go here (default: event_uri, else uri)
    state_uri: str | None = None  # the gateway's state digest is PUT here (edged.fleet; default: none)
    identity: Secret  # DTLS PSK identity
    psk: Secret  # DTLS pre-shared key
    timeout: Duration = 30.0  # a POST not answered within this is retried
    inflight: int = Field(4, ge=1, le=256)

    @field_validator("uri", "event_uri", "command_uri", "result_uri", "state_uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme != "coaps" or not parts.hostname:
            raise ValueError(f"expected a coaps://host[:port]/path URI; got {value!r}")
        return value


def _uplink_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"[{kind}]" if kind in ("mqtt", "coap") else None


# The tags are bracketed so that error paths read ``uplink.port``, not ``uplink.mqtt.port``.
UplinkConfig = Annotated[
    Annotated[MqttUplinkConfig, Tag("[mqtt]")] | Annotated[CoapUplinkConfig, Tag("[coap]")],
    Discriminator(
        _uplink_type,
        custom_error_type="uplink_type",
        custom_error_message="expected type: mqtt or coap",
    ),
]
