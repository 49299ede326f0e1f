"""The gateway's configuration: one YAML file (plus the files it includes),
validated into frozen typed models before anything starts.

Every error names the file, the line, the key path, what was expected and
what was found: ``config.yaml:42: adapters[1].registers[3].type: expected
one of 'int16', 'uint16', ...; got 'int17'``.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pickle
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edged import adapters
from edged.adapter import AdapterConfig
from edged.errors import ConfigError, ConfigProblem
from edged.fields import Duration, FilePath, Model, Secret, distinct, holds_secret, unique
from edged.outbox import DEFAULT_LANE, MAX_LANES, OutboxConfig
from edged.rules.config import Rules, point_problems
from edged.status.authority import host_entry, origin_entry
from edged.uplink.config import UplinkConfig
from edged.uplink.topic import mqtt_string
from edged.yamlsource import KeyPath, SourceMap, format_path, load


class Location(Model):
    """Where the gateway is, for rules on the sun (sunrise, sunset, ...)."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


def _logger_name(value: str) -> str:
    if not all(part.isidentifier() for part in value.split(".")):
        raise ValueError(f"expected a logger name such as pymodbus or edged.adapters.plc1; got {value!r}")
    return value


class GatewayConfig(Model):
    id: str = "edged"
    # Relative paths are taken from the configuration file's folder; under
    # systemd the default is $STATE_DIRECTORY.
    state_dir: FilePath = Field(default_factory=lambda: Path(os.environ.get("STATE_DIRECTORY", "state")))
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The level of single loggers by name: a protocol library's (pymodbus, asyncua, zigpy, bellows,
    # bleak, aiomqtt, paho, aiocoap, ...: warning unless set here) or one of edged's (edged.adapters.plc1).
    log_levels: dict[Annotated[str, AfterValidator(_logger_name)], Literal["debug", "info", "warning", "error"]] = {}
    timezone: str = "UTC"  # an IANA name such as Europe/Berlin
    command_timeout: Duration = 10.0
    stop_timeout: Duration = 10.0
    location: Location | None = None  # for sun triggers
    # kernel: readings stored while the kernel says the system clock is not synchronised
    # (no time server reached since boot) are marked "clock": "unsynced" in their messages;
    # trusted: the clock is always taken as right (a real-time clock set by hand, no time server).
    clock: Literal["kernel", "trusted"] = "kernel"

    @field_validator("id")
    @classmethod
    def _topic_level(cls, value: str) -> str:
        mqtt_string(value)  # the default MQTT client id
        if "+" in value or "#" in value:
            raise ValueError("cannot contain + or #: the gateway id is put into MQTT topics, where they are wildcards")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long for a file
            raise ValueError("expected an IANA time zone such as UTC or Europe/Berlin") from exc
        return value


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpStatusConfig(Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    token: Secret | None = None  # bearer token; required unless host is loopback
    # Names besides the listen address and localhost that the API answers to
    # (``gateway.lan``: any port; ``gateway.lan:8080``: that port only).
    allowed_hosts: tuple[Annotated[str, AfterValidator(host_entry)], ...] = ()
    # Web origins besides the API's own whose pages may write (``https://dashboard.lan``).
    allowed_origins: tuple[Annotated[str, AfterValidator(origin_entry)], ...] = ()
    # Numeric points whose last hour the status page charts (about 0.9 KB each); 0: none.
    history_points: int = Field(2000, ge=0, le=100_000)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpStatusConfig:
        if self.enabled and self.token is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from the network, so a token is required "
                "(token: {env: NAME}, {file: PATH} or {credential: NAME}); or listen on 127.0.0.1:"
            )
        return self


class CoapStatusConfig(Model):
    """The read-only status resources over CoAP. They have no authentication, so
    a listener off loopback must say ``allow_unauthenticated: true``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(5683, ge=0, le=65535)
    allow_unauthenticated: bool = False  # serve off loopback without authentication (a trusted network only)

    @model_validator(mode="after")
    def _opt_in_off_loopback(self) -> CoapStatusConfig:
        if self.enabled and not self.allow_unauthenticated and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is reachable from the network and the CoAP status resources have no "
                "authentication; set allow_unauthenticated: true to serve them there (a trusted network only), "
                "or listen on 127.0.0.1:"
            )
        return self


class StatusConfig(Model):
    http: HttpStatusConfig = HttpStatusConfig()
    coap: CoapStatusConfig = CoapStatusConfig()


# --- remote_config: (edged.fleet, docs/fleet.md) ---


class RemoteConfig(Model):
    """Operations from the cloud: configurations pushed over the uplink (signed, tried,
    rolled back when they cut the gateway off), gateway RPCs and the retained state digest."""

    enabled: bool = False
    # Ed25519 public keys whose signatures are accepted: PEM text or the 32 raw bytes in base64.
    trusted_keys: tuple[str, ...] = ()
    allow_unsigned: bool = False  # accept a pushed configuration without a signature (a trusted network only)
    confirm_after: Duration = Field(60.0, gt=0)  # the trial: the gateway must be healthy again within this
    keep: int = Field(5, ge=1, le=100)  # earlier configuration files kept next to the state
    state_interval: Duration = Field(60.0, gt=0)  # the state digest is published this often (and on changes)
    log_lines: int = Field(500, ge=10, le=100_000)  # the in-memory log ring the logs RPC reads

    @field_validator("trusted_keys")
    @classmethod
    def _ed25519_keys(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        from edged.fleet.signature import public_key

        for index, key in enumerate(keys):
            try:
                public_key(key)
            except ValueError as exc:
                raise ValueError(f"trusted_keys[{index}]: {exc}") from None
        return keys

    @model_validator(mode="after")
    def _keys_or_unsigned(self) -> RemoteConfig:
        if self.enabled and not self.trusted_keys and not self.allow_unsigned:
            raise ValueError("enabled without trusted_keys: give the public keys whose signatures are accepted, "
                             "or allow_unsigned: true (a trusted network only):")  # fmt: skip
        return self


# --- end remote_config ---


class Config(Model):
    gateway: GatewayConfig = GatewayConfig()
    status: StatusConfig = StatusConfig()
    adapters: Annotated[list[AdapterConfig], unique("instance", "adapters", "name")] = []
    include: list[str] = []
    rules: Rules = []
    outbox: OutboxConfig = OutboxConfig()
    uplink: UplinkConfig | None = None  # one uplink, named "uplink" (unless it has a name:)
    uplinks: list[UplinkConfig] | None = None  # several, fed by the one outbox; each named
    remote_config: RemoteConfig = RemoteConfig()  # operations from the cloud (docs/fleet.md)

    @field_validator("uplinks")
    @classmethod
    def _named_uplinks(cls, uplinks: list[UplinkConfig] | None, info: ValidationInfo) -> list[UplinkConfig] | None:
        """Each uplink of ``uplinks:`` gets its name (by default its type, if it is the only one of that type)."""
        if uplinks is None:
            return None
        if info.data.get("uplink") is not None:
            raise ValueError("give either uplink: (one uplink) or uplinks: (a list of them), not both:")
        if not uplinks:
            raise ValueError("expected a list of at least one uplink (or leave uplinks: out):")
        if len(uplinks) > MAX_LANES:
            raise ValueError(f"at most {MAX_LANES} uplinks:")
        types = [uplink.type for uplink in uplinks]
        named = []
        for index, uplink in enumerate(uplinks):
            if uplink.name is None and types.count(uplink.type) > 1:
                raise ValueError(f"uplinks[{index}]: there are {types.count(uplink.type)} uplinks of type {uplink.type}; "
                                 "give each a name:")  # fmt: skip
            named.append(uplink if uplink.name is not None else uplink.model_copy(update={"name": uplink.type}))
        distinct((uplink.name for uplink in named), "uplinks", "name")
        return named

    def uplinks_by_name(self) -> dict[str, UplinkConfig]:
        """Every configured uplink by its name, in the order of the configuration."""
        if self.uplink is not None:
            return {self.uplink.name or DEFAULT_LANE: self.uplink}
        return {uplink.name: uplink for uplink in self.uplinks or [] if uplink.name is not None}

    @model_validator(mode="before")
    @classmethod
    def _sun_triggers_know_where(cls, data: Any) -> Any:
        """Give every sun trigger (in rules, and in their waits) the gateway's location, unless it has one."""
        if not isinstance(data, dict) or not isinstance(data.get("gateway"), dict):
            return data
        location = data["gateway"].get("location")
        if not isinstance(location, dict):
            return data

        def fill(node: Any) -> Any:
            if isinstance(node, list):
                return [fill(item) for item in node]
            if not isinstance(node, dict):
                return node
            node = {key: fill(value) for key, value in node.items()}
            if node.get("type") == "sun":
                node = {**{k: v for k, v in location.items() if k in ("latitude", "longitude")}, **node}
            return node

        return {**data, "rules": fill(data.get("rules", []))}


def load_config(path: str | Path, check_points: bool = False) -> Config:
    """Read, merge and validate a configuration; raise ``ConfigError`` if it is wrong.

    With ``check_points``, a rule naming a point that no configured device
    has (see ``edged.rules.config.point_problems``) is a problem too."""
    path = Path(path)
    data, sources = load(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(str(path), 1, "", f"expected a mapping at the top level; got {type(data).__name__}")])
    data = _merge_includes(path, data, sources)
    problems: list[ConfigProblem] = []
    data["adapters"] = _validate_adapters(data, path, sources, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc, Config, (), path, sources, data))
    if not problems and check_points:
        for problem in point_problems(config.rules, config.adapters):
            loc = ("rules", problem.rule, *problem.where)
            problems.append(ConfigProblem(*sources.locate(loc, str(path)), _name_rule(loc, data) or format_path(loc), problem.message))
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file != str(path), p.file, p.line or 0)))
    return _resolve_paths(config, path)


def load_config_apart(path: str | Path) -> Config:
    """``load_config`` done in a forked child process, which sends the result back pickled.

    Reading and validating a large configuration takes several times the memory
    its result keeps (for 20,000 Modbus points, a peak of some 25 MB of parsed
    data and validation for 5 MB of settings), and CPython keeps such memory once it has had it: the
    daemon would carry it for its whole life. Done in a child, only the result
    is ever built here. Where there is no ``fork``, it is done in this process."""
    if not hasattr(os, "fork"):
        return load_config(path)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 0
        try:
            os.close(reader)
            with os.fdopen(writer, "wb") as stream:
                send_config(path, stream)
        except BaseException:  # noqa: BLE001 - reported by the parent, which loads again to show it
            status = 1
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as stream:
        sent = stream.read()
    _, status = os.waitpid(pid, 0)
    return received_config(path, sent if status == 0 else b"")


def send_config(path: str | Path, stream: BinaryIO) -> None:
    """Load the configuration at ``path`` and write the outcome, pickled, to ``stream``:
    the other half of ``received_config``, in a process of its own."""
    try:
        outcome: tuple[str, Any] = ("config", load_config(path))
    except ConfigError as exc:
        outcome = ("problems", exc.problems)
    pickle.dump(outcome, stream, protocol=pickle.HIGHEST_PROTOCOL)


def received_config(path: str | Path, sent: bytes) -> Config:
    """The configuration a child process sent with ``send_config``; ``ConfigError`` with its problems.
    When the child sent nothing (it failed in a way it could not report), load here, to fail visibly."""
    if not sent:
        return load_config(path)
    kind, value = pickle.loads(sent)  # from our own child, through a pipe only it and we hold
    if kind == "problems":
        raise ConfigError(value)
    return value  # type: ignore[no-any-return]


def _merge_includes(path: Path, data: dict[str, Any], sources: SourceMap) -> dict[str, Any]:
    """Merge the files named by ``include:`` (globs relative to ``path``):
    their lists (``rules``, ``adapters``) extend the main file's."""
    includes = data.get("include", [])
    if not isinstance(includes, list):
        return data  # validation reports the wrong type
    for index, pattern in enumerate(includes):
        matches = sorted(glob.glob(str(path.parent / str(pattern))))
        if not matches:
            file, line = sources.locate(("include", index), str(path))
            raise ConfigError([ConfigProblem(file, line, f"include[{index}]", f"no file matches {pattern!r}")])
        for match in matches:
            extra, extra_sources = load(Path(match))
            if not isinstance(extra, dict):
                raise ConfigError([ConfigProblem(match, 1, "", "an included file must hold a mapping of sections")])
            for key, value in extra.items():
                if key == "include":
                    raise ConfigError([ConfigProblem(match, extra_sources.locate((key,), match)[1], key, "includes do not nest")])
                if isinstance(value, list) and isinstance(data.get(key, []), list):
                    shift = len(data.get(key, []))
                    data[key] = [*data.get(key, []), *value]
                    sources.merge(extra_sources, (key,), shift)
                elif key in data:
                    file, line = extra_sources.locate((key,), match)
                    raise ConfigError([ConfigProblem(file, line, key, "already set in the main file")])
                else:
                    data[key] = value
                    sources.merge(extra_sources)
    return data


def _validate_adapters(data: dict[str, Any], path: Path, sources: SourceMap, problems: list[ConfigProblem]) -> Any:
    """Validate each entry of ``data["adapters"]`` with the model its ``type:`` picks."""
    raw = data.get("adapters", [])
    if not isinstance(raw, list):
        return raw
    validated = []
    for index, entry in enumerate(raw):
        where: KeyPath = ("adapters", index)
        type_ = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(type_, str) or type_ not in adapters.registry():
            file, line = sources.locate((*where, "type"), str(path))
            expected = ", ".join(sorted(adapters.registry()))
            found = "nothing" if type_ is None else _shown(type_)
            problems.append(ConfigProblem(file, line, format_path((*where, "type")), f"expected one of {expected}; got {found}"))
            continue
        model = adapters.config_model(type_)
        try:
            validated.append(model.model_validate(entry))
        except ValidationError as exc:
            problems.extend(_problems(exc, model, where, path, sources, data))
    return validated


def _problems(
    exc: ValidationError, model: type[BaseModel], prefix: KeyPath, path: Path, sources: SourceMap, data: Any = None
) -> list[ConfigProblem]:
    """``exc``'s errors, from validating ``data`` at ``prefix`` as a ``model``, located in the sources."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = (*prefix, *(part for part in error["loc"] if not _is_union_tag(part)))
        if data is not None:
            loc = _drop_tags(loc, data)
        secret = holds_secret(model, loc[len(prefix) :])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, error["ctx"]["discriminator"].strip("'"))  # the problem is that key: ``type``
        file, line = sources.locate(loc, str(path))
        problems.append(ConfigProblem(file, line, _name_rule(loc, data) or format_path(loc), _describe(error, secret)))
    return problems


def _drop_tags(loc: KeyPath, data: Any) -> KeyPath:
    """Remove the member tag a discriminated union adds to ``loc`` (``triggers[0].threshold.above``):
    a part that is no key of the data there but its ``type:``."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node and node.get("type") == part:
            continue
        kept.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(kept)


def _name_rule(loc: KeyPath, data: Any) -> str | None:
    """``rules[3] (id hall-light).triggers[0]...``: a problem in a rule also names the rule's id."""
    if len(loc) < 2 or loc[0] != "rules" or not isinstance(loc[1], int) or not isinstance(data, dict):
        return None
    rules = data.get("rules")
    if not isinstance(rules, list) or loc[1] >= len(rules) or not isinstance(rules[loc[1]], dict):
        return None
    rule_id = rules[loc[1]].get("id")
    if not isinstance(rule_id, str):
        return None
    rest = format_path(("x", *loc[2:]))[1:]
    return f"{format_path(loc[:2])} (id {rule_id}){rest}"


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the member type of a union to ``loc`` (e.g. 'function-after[...]'); it is no key.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _describe(error: Any, secret: bool = False) -> str:
    """What went wrong; the value found is shown, unless it is (or may be) a ``secret``."""
    kind = error["type"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):  # the second from a (slotted) dataclass
        return "unknown key"
    if kind in ("missing", "missing_keyword_only_argument", "union_tag_not_found"):
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"expected one of {error['ctx']['expected_tags']}; got {error['ctx']['tag']!r}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    message = message.replace("Input should be", "expected")
    found = error.get("input")
    if secret:
        return _without_secret(message, found)
    if message.endswith(":"):
        return message[:-1]
    if "; got " in message:  # the validator said what it found
        return message
    if isinstance(found, (dict, list)):
        return f"{message}; got a {type(found).__name__}"
    return f"{message}; got {_shown(found)}"


def _without_secret(message: str, found: Any) -> str:
    """``message`` about a secret that was ``found``, with the value cut out."""
    message = message.removesuffix(":").split("; got ")[0]
    text = found.get_secret_value() if isinstance(found, SecretStr) else str(found)
    if len(text) >= 4:  # shorter ones are no secret worth the name, and would cut words apart
        message = message.replace(text, "(the secret)")
    if isinstance(found, (str, SecretStr)):
        kind = "a string"
    elif isinstance(found, bool):
        kind = "true or false"
    elif isinstance(found, (int, float)):
        kind = "a number"
    elif isinstance(found, dict):
        return message  # {env: ...}, {file: ...}: the validator named what is wrong
    elif found is None:
        kind = "nothing"
    else:
        kind = f"a {type(found).__name__}"
    return f"{message}; got {kind} (not shown: it is a secret)"


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` as it is shown in a message, shortened if long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _resolve_paths(config: Config, path: Path) -> Config:
    state_dir = config.gateway.state_dir
    if not state_dir.is_absolute():
        state_dir = (path.parent / state_dir).resolve()
    return config.model_copy(update={"gateway": config.gateway.model_copy(update={"state_dir": state_dir})})
