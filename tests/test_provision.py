"""`edged provision` creates a usable identity with safe permissions and
never replaces an existing key unless asked."""

from __future__ import annotations

import argparse
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from edged import provision as command
from edged.identity import load_key, provision, public_key_fingerprint


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.main(parser.parse_args(argv))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_csr_names_the_gateway_and_is_signed_by_the_new_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--gateway-id", "plant-7", "--dir", str(tmp_path)]) == 0
    key, csr_path = tmp_path / "gateway.key", tmp_path / "gateway.csr"
    assert mode(key) == 0o600
    assert mode(csr_path) == 0o644
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "plant-7"
    out = capsys.readouterr().out
    assert "plant-7" in out
    assert str(csr_path) in out
    assert public_key_fingerprint(load_key(key)) in out
    assert not list(tmp_path.glob(".gateway*")), "temporary files left behind"


def test_running_again_keeps_the_key_unless_new_key(tmp_path: Path) -> None:
    first = provision("gw", tmp_path)
    again = provision("gw", tmp_path)
    assert not again.key_created
    assert again.fingerprint == first.fingerprint
    replaced = provision("gw", tmp_path, new_key=True)
    assert replaced.key_created
    assert replaced.fingerprint != first.fingerprint
    csr = x509.load_pem_x509_csr((tmp_path / "gateway.csr").read_bytes())
    assert public_key_fingerprint(load_key(tmp_path / "gateway.key")) == replaced.fingerprint
    assert csr.public_key() == load_key(tmp_path / "gateway.key").public_key()


def test_self_signed_certificate_loads_as_a_tls_client_identity(tmp_path: Path) -> None:
    identity = provision("gw-self", tmp_path, self_signed=True, days=30)
    assert identity.cert_path is not None
    assert mode(identity.cert_path) == 0o644
    cert = x509.load_pem_x509_certificate(identity.cert_path.read_bytes())
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-self"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(identity.cert_path, identity.key_path)  # raises if key and certificate disagree


def test_rsa_keys_work_too(tmp_path: Path) -> None:
    identity = provision("gw", tmp_path, key_type="rsa")
    assert x509.load_pem_x509_csr((tmp_path / "gateway.csr").read_bytes()).is_signature_valid
    assert identity.key_created


def test_gateway_id_comes_from_the_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("gateway:\n  id: boiler-house\n")
    assert run(["--config", str(config)]) == 0
    csr = x509.load_pem_x509_csr((tmp_path / "gateway.csr").read_bytes())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "boiler-house"
    assert "boiler-house" in capsys.readouterr().out


def test_a_broken_key_file_is_reported_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gateway.key").write_text("not a key")
    assert run(["--dir", str(tmp_path)]) == 1
    assert "--new-key" in capsys.readouterr().err
    assert (tmp_path / "gateway.key").read_text() == "not a key"
