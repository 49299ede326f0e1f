"""Mistakes in an opcua adapter section are reported with file, line and what was expected."""

from __future__ import annotations

import textwrap

import pytest

from edged.config import load_config
from edged.errors import ConfigError


def problems(tmp_path, adapter: str) -> str:
    path = tmp_path / "edged.yaml"
    path.write_text("adapters:\n" + textwrap.indent(textwrap.dedent(adapter), "  "))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


BASE = """\
- type: opcua
  endpoint: opc.tcp://plc:4840
  devices:
    - id: boiler
      nodes:
"""


def test_a_valid_section_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("PLC_PASSWORD", "s3cret")
    path = tmp_path / "edged.yaml"
    path.write_text(
        "adapters:\n"
        + textwrap.indent(
            BASE
            + "        - {key: temp, node: 'ns=2;s=Boiler.Temp', deadband: {type: percent, value: 2}}\n"
            + "        - {key: level, path: '0:Objects/2:Boiler/2:Level', poll: 2s}\n"
            + "  username: operator\n  password: {env: PLC_PASSWORD}\n",
            "  ",
        )
    )
    (adapter,) = load_config(path).adapters
    assert adapter.password.get_secret_value() == "s3cret"
    assert adapter.devices[0].nodes[1].poll == 2.0


def test_bad_node_id_names_the_form_expected(tmp_path):
    text = problems(tmp_path, BASE + "        - {key: temp, node: 'Boiler.Temp'}\n")
    assert "edged.yaml:7: adapters[0].devices[0].nodes[0].node: expected a NodeId such as ns=2;s=" in text


def test_node_needs_exactly_one_address(tmp_path):
    text = problems(tmp_path, BASE + "        - {key: temp, node: 'ns=2;i=5', path: '0:Objects/2:X'}\n")
    assert "give exactly one of node (a NodeId) or path (a browse path)" in text


def test_browse_path_elements_need_a_namespace(tmp_path):
    text = problems(tmp_path, BASE + "        - {key: temp, path: 'Objects/Boiler'}\n")
    assert "'Objects' has no namespace index" in text


def test_secure_policy_needs_certificates_and_server_trust(tmp_path):
    text = problems(tmp_path, BASE + "        - {key: t, node: 'ns=2;i=5'}\n  security: {policy: Basic256Sha256, mode: Sign}\n")
    assert "needs certificate and private_key (make them with `edged opcua cert`)" in text
    text = problems(
        tmp_path,
        BASE
        + "        - {key: t, node: 'ns=2;i=5'}\n"
        + "  security: {policy: Basic256Sha256, mode: SignAndEncrypt, certificate: c.der, private_key: k.pem}\n",
    )
    assert "server_certificate" in text and "trust_any_server" in text


def test_unknown_policy_lists_the_choices(tmp_path):
    text = problems(tmp_path, BASE + "        - {key: t, node: 'ns=2;i=5'}\n  security: {policy: Basic128Rsa15}\n")
    assert "'None', 'Basic256Sha256' or 'Aes128_Sha256_RsaOaep'" in text


def test_polled_node_takes_no_deadband(tmp_path):
    text = problems(
        tmp_path, BASE + "        - {key: t, node: 'ns=2;i=5', poll: 1s, deadband: {value: 1}}\n"
    )
    assert "a polled node takes no subscription settings" in text


def test_a_method_is_called_not_read(tmp_path):
    text = problems(tmp_path, BASE + "        - {key: reset, node: 'ns=2;s=Reset', method: true, poll: 1s}\n")
    assert "edged.yaml:7: adapters[0].devices[0].nodes[0]: a method is called, not read" in text
