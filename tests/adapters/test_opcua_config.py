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


def test_nodes_and_browse_paths_by_namespace_uri_load(tmp_path):
    path = tmp_path / "edged.yaml"
    path.write_text(
        "adapters:\n"
        + textwrap.indent(
            BASE
            + "        - {key: temp, node: 'nsu=urn:acme:plant;s=Boiler.Temp'}\n"
            + "        - {key: id, node: 'nsu=http://acme.com/UA/Plant/;g=09087e75-8e5e-499b-954f-f2a9603db28a'}\n"
            + "        - {key: level, path: '0:Objects/nsu=http://acme.com/UA/Plant/;Boiler/nsu=urn:a%3Bb;Level'}\n",
            "  ",
        )
    )
    (adapter,) = load_config(path).adapters
    temp, guid, level = (node.location for node in adapter.devices[0].nodes)
    assert (temp.namespace, temp.identifier) == ("urn:acme:plant", "s=Boiler.Temp")
    assert guid.namespace == "http://acme.com/UA/Plant/"  # a URI may hold '/' in a NodeId and in a path
    assert [(e.namespace, e.name) for e in level.elements] == [
        (0, "Objects"), ("http://acme.com/UA/Plant/", "Boiler"), ("urn:a;b", "Level")  # %3B is ';'
    ]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ("{key: t, node: 'nsu=;s=X'}", "expected a NodeId such as"),
        ("{key: t, node: 'nsu=urn:x;q=X'}", "expected a NodeId such as"),
        ("{key: t, node: 'ns=2;i=twelve'}", "i= takes a number"),
        ("{key: t, node: 'ns=70000;i=1'}", "a namespace index is at most 65535"),
        ("{key: t, path: '0:Objects/nsu=urn:x'}", "has no ';' and name after the URI"),
        ("{key: t, path: '0:Objects//2:X'}", "has an empty element"),
    ],
    ids=["empty-uri", "unknown-identifier", "numeric", "index-range", "uri-without-name", "empty-element"],
)
def test_bad_namespace_forms_are_named(tmp_path, node, expected):
    text = problems(tmp_path, BASE + f"        - {node}\n")
    assert "edged.yaml:7: adapters[0].devices[0].nodes[0]." in text and expected in text, text
