"""The outbox: and uplink: sections validate with messages that say what was expected, and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.config import load_config
from edged.errors import ConfigError
from edged.uplink.config import CoapUplinkConfig, MqttUplinkConfig


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path)


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_mqtt_defaults_and_coap_secrets_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(tmp_path, "uplink: {type: mqtt, host: broker.local}\n")
    assert isinstance(config.uplink, MqttUplinkConfig)  # type: ignore[attr-defined]
    assert (config.uplink.port, config.uplink.qos, config.uplink.protocol) == (1883, 1, "3.1.1")  # type: ignore[attr-defined]
    monkeypatch.setenv("EDGED_PSK", "s3cret")
    config = load(
        tmp_path,
        "uplink:\n  type: coap\n  uri: coaps://cloud.example:5684/in\n  identity: gw1\n  psk: {env: EDGED_PSK}\n",
    )
    assert isinstance(config.uplink, CoapUplinkConfig)  # type: ignore[attr-defined]
    assert config.uplink.psk.get_secret_value() == "s3cret"  # type: ignore[attr-defined]


def test_errors_name_line_key_and_expectation(tmp_path: Path) -> None:
    text = "gateway: {id: gw}\nuplink:\n  type: mqtt\n  host: h\n  port: lots\n"
    assert "config.yaml:5: uplink.port:" in problem(tmp_path, text)
    assert "expected type: mqtt or coap" in problem(tmp_path, "uplink: {type: amqp, host: h}\n")
    assert "unknown placeholder {dev}" in problem(tmp_path, "uplink: {type: mqtt, host: h, topic: 'a/{dev}'}\n")
    assert "cert and key go together" in problem(tmp_path, "uplink: {type: mqtt, host: h, tls: {cert: a.crt}}\n")
    assert problem(tmp_path, "uplink: {type: coap, uri: 'coap://x/y', identity: i, psk: k}\n").endswith(
        "uplink.uri: expected a coaps://host[:port]/path URI; got 'coap://x/y'"  # said once
    )
    assert "outbox.policy:" in problem(tmp_path, "outbox: {policy: newest}\n")
