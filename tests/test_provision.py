"""`edged provision` creates a usable identity with safe permissions and
never replaces an existing key unless asked."""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import ssl
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from edged import provision as command
from edged.identity import load_key, provision, public_key_fingerprint
from edged.provision import KEY_MODE_FOR_SERVICE, SERVICE_ACCOUNT

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "edged.service"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root hands files to another group")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.main(parser.parse_args(argv))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_csr_names_the_gateway_and_is_signed_by_the_new_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An account this machine has no group of: the key stays the owner's alone (0600).
    assert run(["--gateway-id", "plant-7", "--dir", str(tmp_path), "--service-account", "no-such-edged-account"]) == 0
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


def test_the_key_is_handed_to_the_units_account_within_its_umask() -> None:
    unit = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert f"{unit['User']}:{unit['Group']}" == SERVICE_ACCOUNT
    assert KEY_MODE_FOR_SERVICE & int(unit["UMask"], 8) == 0  # what the service itself would create
    assert KEY_MODE_FOR_SERVICE & 0o007 == 0


@pytest.fixture
def config_dir() -> Iterator[Path]:
    """A directory like /etc/edged: root, group-readable (given to the group by the test), not world-readable."""
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        os.chmod(name, 0o750)
        yield Path(name)


@as_root
def test_as_root_the_service_account_can_read_the_key_and_no_one_else(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service = pwd.getpwnam("nobody")  # stands in for edged; any account that exists here
    group = grp.getgrgid(service.pw_gid)
    os.chown(config_dir, 0, group.gr_gid)
    assert run(["--gateway-id", "gw", "--dir", str(config_dir), "--service-account", service.pw_name]) == 0
    key, csr = config_dir / "gateway.key", config_dir / "gateway.csr"
    assert (key.stat().st_uid, key.stat().st_gid, mode(key)) == (0, group.gr_gid, 0o640)
    assert (csr.stat().st_uid, csr.stat().st_gid, mode(csr)) == (0, group.gr_gid, 0o644)
    captured = capsys.readouterr()
    assert f"owner:       root:{group.gr_name}" in captured.out
    assert captured.err == ""
    read = subprocess.run(["cat", str(key)], user=service.pw_uid, group=service.pw_gid, extra_groups=[],
                          capture_output=True, timeout=30, check=False)  # fmt: skip
    assert read.returncode == 0 and read.stdout == key.read_bytes()
    other = next(user for user in pwd.getpwall() if user.pw_uid not in (0, service.pw_uid) and user.pw_gid != group.gr_gid)
    refused = subprocess.run(["cat", str(key)], user=other.pw_uid, group=other.pw_gid, extra_groups=[],
                             capture_output=True, timeout=30, check=False)  # fmt: skip
    assert refused.returncode != 0


@as_root
def test_as_root_without_the_service_account_it_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--dir", str(tmp_path), "--service-account", "no-such-edged-account"]) == 0
    key, csr = tmp_path / "gateway.key", tmp_path / "gateway.csr"
    assert (key.stat().st_uid, key.stat().st_gid, mode(key)) == (0, 0, 0o600)
    err = capsys.readouterr().err
    assert "'no-such-edged-account' does not exist on this machine" in err
    assert err.splitlines()[-2:] == [f"  chown root:no-such-edged-account {key} {csr}", f"  chmod 0640 {key}"]


@as_root
def test_as_root_a_directory_the_service_cannot_enter_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.chmod(tmp_path, 0o700)
    service = pwd.getpwnam("nobody")
    group = grp.getgrgid(service.pw_gid).gr_name
    assert run(["--dir", str(tmp_path), "--service-account", "nobody"]) == 0
    err = capsys.readouterr().err
    assert f"group '{group}' cannot enter {tmp_path}" in err
    assert err.splitlines()[-2:] == [f"  chgrp {group} {tmp_path}", f"  chmod g+rx {tmp_path}"]


def test_a_kept_key_that_others_could_read_is_closed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    provision("gw", tmp_path)
    key = tmp_path / "gateway.key"
    os.chmod(key, 0o644)
    assert run(["--dir", str(tmp_path), "--service-account", "no-such-edged-account"]) == 0
    assert mode(key) & 0o007 == 0
    assert f"{key} was readable by other users" in capsys.readouterr().err
