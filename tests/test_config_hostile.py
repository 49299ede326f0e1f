"""A careless or hostile configuration file is refused by ``edged check-config``
with exit code 2 and ``file:line: reason``: never a traceback, never minutes
of CPU, and never the value of a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.config import load_config
from edged.errors import ConfigError
from edged.fields import MAX_SECRET_BYTES
from edged.yamlsource import MAX_BYTES

GOOD = """\
gateway:
  id: test
adapters:
  - type: simulated
    name: sim
    devices:
      - {id: t1, kind: thermostat}
"""

SECRET = "918273645546372819"  # distinctive: it must appear nowhere in what check-config prints


def check(path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", "check-config", str(path)], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_refused(result: subprocess.CompletedProcess[str], where: str, reason: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"{where}: {reason}" in result.stderr, result.stderr


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        (f"uplink:\n  type: mqtt\n  host: localhost\n  password: {SECRET}\n", 11, "uplink.password"),
        (f"uplink:\n  type: coap\n  uri: coaps://127.0.0.1/r\n  identity: gw\n  psk: {SECRET}\n", 12, "uplink.psk"),
        (f"status:\n  http:\n    token: {SECRET}\n", 10, "status.http.token"),
    ],
    ids=["mqtt-password", "coap-psk", "status-token"],
)
def test_a_secret_of_the_wrong_type_is_not_shown(tmp_path, section, line, key):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + section)
    result = check(path)
    expected = "expected a string, {env: NAME}, {file: PATH} or {credential: NAME}; got a number"
    assert_refused(result, f"{path}:{line}", f"{key}: {expected}")
    assert SECRET not in result.stderr + result.stdout


def test_a_secret_that_fails_its_check_is_not_shown(tmp_path):
    key = f"{SECRET}00112233445566zz"  # 32 characters, but not hexadecimal
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + f"  - type: zigbee\n    name: zb\n    radio: simulated\n    network:\n      key: {key}\n")
    result = check(path)
    assert_refused(result, f"{path}:12", "adapters[1].network.key: expected a network key of 16 bytes as 32 hex digits; got a string")
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("{env: [EDGED_TOKEN]}", "expected {env: NAME} with a NAME that is a non-empty string"),
        ("{file: big-token}", "secret file big-token is larger than 64 KiB"),
    ],
    ids=["env-name-a-list", "file-too-large"],
)
def test_a_secret_source_that_cannot_be_read_is_refused(tmp_path, token, reason):
    (tmp_path / "big-token").write_text("x" * (MAX_SECRET_BYTES + 1))
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + f"status:\n  http:\n    token: {token}\n")
    result = subprocess.run(
        [sys.executable, "-m", "edged", "check-config", path.name], cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"c.yaml:10: status.http.token: {reason}" in result.stderr


# --- files that would cost a traceback, time or memory ----------------------------------------


def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    # id: (bytes of the file, line, reason)
    "not-utf8": (GOOD.encode().replace(b"id: test", b"id: t\xffst"), 2, "not UTF-8 text (byte 0xff)"),
    "control-character": (GOOD.encode().replace(b"id: test", b"id: t\x01st"), 2, "the character U+0001 is not allowed in YAML"),
    "5000-nested-lists": (("gateway: " + "[" * 5000 + "]" * 5000 + "\n").encode(), 1, ""),
    "5000-nested-maps": (("gateway: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n").encode(), 1, ""),
    "deep-block": ("".join(f"{'  ' * depth}k:\n" for depth in range(1000)).encode(), 100, "values nest deeper than 100 levels"),
    "billion-laughs": (billion_laughs().encode(), 6, "aliases repeat more than 100000 values in all"),
    "alias-inside-itself": (b"gateway: &g {id: *g}\n", 1, "the alias *g is inside the value it names"),
    "5000-digit-number": (f"gateway:\n  id: {'7' * 5000}\n".encode(), 2, "cannot read this value as int: Exceeds the limit"),
    "no-such-date": (b"gateway:\n  id: 2024-02-30\n", 2, "cannot read this value as timestamp: day is out of range for month"),
    "timezone-too-long": (GOOD.replace("id: test", f"id: test\n  timezone: {'a' * 300}").encode(), 3, "gateway.timezone: expected an IANA"),
    "too-large": (GOOD.encode() + b"# " + b"x" * MAX_BYTES + b"\n", 1, "the file is larger than 4 MiB"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_file_exits_2_with_file_and_line(tmp_path, case):
    content, line, reason = HOSTILE[case]
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert_refused(check(path, timeout=20), f"{path}:{line}", reason)


def test_an_included_file_has_the_same_limits(tmp_path):
    (tmp_path / "extra.yaml").write_text("rules: []\n# " + "x" * MAX_BYTES + "\n")
    (tmp_path / "main.yaml").write_text(GOOD + "include: [extra.yaml]\n")
    assert_refused(check(tmp_path / "main.yaml", timeout=20), f"{tmp_path / 'extra.yaml'}:1", "the file is larger than 4 MiB")


def test_a_key_with_a_line_break_is_shown_on_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("id: test", 'id: test\n  "colour\\nc.yaml:1: ok": blue'))
    result = check(path)
    assert_refused(result, f"{path}:3", "gateway.'colour\\nc.yaml:1: ok': unknown key")
    assert len(result.stderr.splitlines()) == 1


def test_a_device_is_not_read_as_an_included_file_or_a_secret(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD + "include: [/dev/zero]\n")
    assert_refused(check(path), "/dev/zero", "a device, not a file")
    path.write_text(GOOD + "status:\n  http:\n    token: {file: /dev/zero}\n")
    assert_refused(check(path), f"{path}:10", "status.http.token: secret file /dev/zero is a device, not a file")


def test_a_modbus_point_type_that_is_a_list_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        GOOD + "  - type: modbus\n    name: plant\n    connections:\n      - transport: tcp\n        host: 127.0.0.1\n"
        "        devices:\n          - id: meter\n            order: CDAB\n            points:\n"
        "              - {key: volts, table: input, address: 0, type: [float32]}\n"
    )
    assert_refused(check(path), f"{path}:17", "adapters[1].connections[0].devices[0].points[0].type: expected")


def test_a_state_dir_with_nul_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("id: test", 'id: test\n  state_dir: "st\\0ate"'))
    assert_refused(check(path), f"{path}:3", "gateway.state_dir: a path cannot contain the character NUL")


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ('uplink:\n  type: mqtt\n  host: 127.0.0.1\n  tls: {ca: "/etc/ca\\0.pem"}\n', 4, "uplink.tls.ca"),
        ('outbox: {path: "out\\0box.sqlite"}\n', 1, "outbox.path"),
        ("adapters:\n  - type: opcua\n    name: plc\n    endpoint: opc.tcp://127.0.0.1:4840\n"
         '    security: {policy: Basic256Sha256, mode: SignAndEncrypt, certificate: "/a\\0.der", private_key: /k.pem,'
         " trust_any_server: true}\n    devices: []\n", 5, "adapters[0].security.certificate"),
    ],
)
def test_a_certificate_or_file_path_with_nul_is_a_config_error(tmp_path, section, line, key):
    path = tmp_path / "c.yaml"
    path.write_text("gateway: {id: test}\n" + section)
    assert_refused(check(path), f"{path}:{line + 1}", f"{key}: a path cannot contain the character NUL")


def test_an_adapter_type_that_is_no_string_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("type: simulated", "type: [simulated]"))
    assert_refused(check(path), f"{path}:4", "adapters[0].type: expected one of")


# --- names MQTT refuses ------------------------------------------------------------------------

MQTT = GOOD + "uplink:\n  type: mqtt\n  host: localhost\n"

MQTT_NAMES = {
    # id: (text after GOOD's gateway.id or at the end of MQTT, line, expected)
    "gateway-id-wildcard": ('gateway:\n  id: "gw#1"\n', 2, "gateway.id: cannot contain + or #"),
    "gateway-id-empty": ('gateway:\n  id: ""\n', 2, "gateway.id: cannot be empty"),
    "gateway-id-nul": ('gateway:\n  id: "gw\\0"\n', 2, "gateway.id: cannot contain the character U+0000 (NUL)"),
    "gateway-id-too-long": (f"gateway:\n  id: {'é' * 40000}\n", 2, "gateway.id: is 80000 bytes long in UTF-8; MQTT allows at most 65535"),
    "client-id-empty": ('  client_id: ""\n', 11, "uplink.client_id: cannot be empty"),
    "client-id-control": ('  client_id: "gw\\x01"\n', 11, "uplink.client_id: cannot contain the character U+0001"),
    "topic-nul": ('  topic: "{prefix}/\\0/{device}"\n', 11, "uplink.topic: cannot contain the character U+0000 (NUL)"),
    "topic-format-spec": (
        '  topic: "{prefix}/{device:>999999999}"\n',
        11,
        "uplink.topic: a placeholder takes no format spec or conversion: write {device}",
    ),
    "event-topic-conversion": (
        '  event_topic: "{prefix}/{event!r}"\n',
        11,
        "uplink.event_topic: a placeholder takes no format spec or conversion",
    ),
    "status-topic-empty": ('  status_topic: ""\n', 11, "uplink.status_topic: cannot be empty"),
    "result-topic-too-long": (f"  result_topic: {'r' * 65536}\n", 11, "uplink.result_topic: is 65536 bytes long in UTF-8"),
    "prefix-control": ('  prefix: "edged\\x7f"\n', 11, "uplink.prefix: cannot contain the character U+007F"),
    "command-topic-partial-wildcard": (
        '  command_topic: "{prefix}/commands/x+"\n',
        11,
        "uplink.command_topic: a wildcard + or # must be a whole level",
    ),
    "command-topic-inner-hash": ('  command_topic: "{prefix}/#/x"\n', 11, "uplink.command_topic: the wildcard # must be the last level"),
    "command-topic-takes-results": (
        '  command_topic: "{prefix}/commands/+"\n',
        8,
        "uplink: command_topic '{prefix}/commands/+' would receive what the gateway publishes to result_topic",
    ),
    "command-topic-wildcard-for-home-assistant": (
        '  command_topic: "{prefix}/cmd/+"\n  topic: "{prefix}/{device}/{point}"\n  homeassistant: {}\n',
        8,
        "uplink: Home Assistant publishes commands to command_topic, so it cannot contain the wildcards + or #",
    ),
}


@pytest.mark.parametrize("case", MQTT_NAMES, ids=list(MQTT_NAMES))
def test_a_name_mqtt_refuses_exits_2_with_file_line_and_key(tmp_path, case):
    text, line, expected = MQTT_NAMES[case]
    path = tmp_path / "c.yaml"
    path.write_text(MQTT.replace("gateway:\n  id: test\n", text) if text.startswith("gateway:") else MQTT + text)
    assert_refused(check(path), f"{path}:{line}", expected)


def test_a_command_topic_may_have_wildcards_as_whole_levels(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MQTT + '  command_topic: "{prefix}/commands/+/#"\n  result_topic: "{prefix}/results"\n')
    result = check(path)
    assert result.returncode == 0, result.stderr


# --- any input: a configuration or a ConfigError ------------------------------------------------

KEYS = ["gateway", "id", "adapters", "type", "simulated", "name", "devices", "kind", "include", "rules", "uplink",
        "mqtt", "host", "topic", "status", "http", "token", "outbox", "env", "file", "interval", "when", "then"]  # fmt: skip

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(KEYS)
    | st.text(max_size=20)
    | st.sampled_from(["2024-02-30", "0x_", "1" * 5000, "{prefix}/{x}", "5s", "-1", ".nan"])
)
def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4)


DOCUMENTS = st.recursive(SCALARS, _containers)
TEXTS = DOCUMENTS.map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)) | st.text(max_size=200)


def load_or_refuse(path: Path) -> None:
    try:
        load_config(path, check_points=True)
    except ConfigError as exc:
        assert exc.problems
        assert all(problem.file and problem.message for problem in exc.problems)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_any_text_is_a_config_or_a_config_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    load_or_refuse(path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200) | TEXTS.map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_are_a_config_or_a_config_error(tmp_path, content):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    load_or_refuse(path)
