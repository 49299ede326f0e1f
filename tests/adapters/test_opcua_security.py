"""Secure OPC UA sessions with certificates made by ``edged opcua cert``, and the reasons a session fails or ends."""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from edged.adapters.opcua import cli
from edged.adapters.opcua.adapter import OpcuaAdapter
from edged.adapters.opcua.certs import CERT_FILE, KEY_FILE, make_certificate
from edged.adapters.opcua.config import OpcuaConfig
from edged.errors import CommandError
from edged.model import Command, Origin, Quality
from tests.adapters.opcua_server import PlantServer, RetryLog, free_port

CLIENT_URI = "urn:edged:test:gateway"


def make_cert(out: Path, uri: str = CLIENT_URI) -> Path:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args(["cert", "--out", str(out), "--uri", uri])) == 0
    return out


def secure_config(server: PlantServer, client_dir: Path, **security: object) -> OpcuaConfig:
    return OpcuaConfig.model_validate(
        {
            "type": "opcua",
            "name": "secure",
            "endpoint": server.endpoint,
            "reconnect": {"initial": 0.2, "maximum": 0.5},
            "security": {
                "policy": "Basic256Sha256",
                "mode": "SignAndEncrypt",
                "certificate": str(client_dir / CERT_FILE),
                "private_key": str(client_dir / KEY_FILE),
                "application_uri": CLIENT_URI,
                "server_certificate": str(server.server_files().certificate),
                **security,
            },
            "subscription": {"publishing_interval": 0.05},
            "devices": [{"id": "boiler", "nodes": [{"key": "temperature", "node": "ns=2;s=Boiler.Temperature"}]}],
        }
    )


@pytest.fixture
async def secure_plant(tmp_path) -> AsyncIterator[PlantServer]:
    client_dir = make_cert(tmp_path / "client")
    server = PlantServer(free_port(), security=True, cert_dir=tmp_path, trusted_client=client_dir / CERT_FILE)
    await server.start()
    yield server
    await server.stop()


def test_certificate_names_the_application_uri(tmp_path):
    make_cert(tmp_path, "urn:plant1:edged")
    certificate = x509.load_der_x509_certificate((tmp_path / CERT_FILE).read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:plant1:edged"]
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o077 == 0  # the key is private to its owner


def test_cert_command_keeps_existing_files(tmp_path, capsys):
    make_cert(tmp_path)
    before = (tmp_path / KEY_FILE).read_bytes()
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.main(parser.parse_args(["cert", "--out", str(tmp_path), "--uri", CLIENT_URI])) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / KEY_FILE).read_bytes() == before


def test_application_uri_must_be_a_uri():
    with pytest.raises(ValueError, match="application URI"):
        make_certificate("edged")


@pytest.mark.parametrize(
    ("policy", "mode"),
    [("Basic256Sha256", "SignAndEncrypt"), ("Basic256Sha256", "Sign"), ("Aes128_Sha256_RsaOaep", "SignAndEncrypt")],
)
async def test_secure_session_with_generated_certificate(secure_plant, hub, watch, running, tmp_path, policy, mode):
    config = secure_config(secure_plant, tmp_path / "client", policy=policy, mode=mode)
    running(OpcuaAdapter(config, hub, tmp_path))
    await watch.until(lambda: (r := hub.value("secure/boiler", "temperature")) and r.quality is Quality.GOOD)
    await secure_plant.set("Temperature", 64.0)
    await watch.until(lambda: hub.value("secure/boiler", "temperature").value == 64.0)


async def test_untrusted_client_certificate_is_refused(secure_plant, hub, running, tmp_path):
    stranger = make_cert(tmp_path / "stranger")
    adapter = OpcuaAdapter(secure_config(secure_plant, stranger), hub, tmp_path)
    retries = RetryLog(adapter.log)
    with retries:
        running(adapter)
        await retries.wait(2)
    assert any("Bad" in m for m in retries.messages), retries.messages
    assert not hub.devices["secure/boiler"].online
    assert hub.value("secure/boiler", "temperature") is None


async def test_server_trusted_through_a_certificate_folder(secure_plant, hub, watch, running, tmp_path):
    trusted = tmp_path / "trusted-servers"
    trusted.mkdir()
    (trusted / "plant.der").write_bytes(secure_plant.server_files().certificate.read_bytes())
    config = secure_config(secure_plant, tmp_path / "client", server_certificate=None, trusted_certificates=str(trusted))
    running(OpcuaAdapter(config, hub, tmp_path))
    await watch.until(lambda: (r := hub.value("secure/boiler", "temperature")) and r.quality is Quality.GOOD)


async def test_server_missing_from_the_certificate_folder_is_refused(secure_plant, hub, running, tmp_path):
    trusted = tmp_path / "trusted-servers"
    trusted.mkdir()
    (trusted / "other.der").write_bytes(make_cert(tmp_path / "other", "urn:other:server").joinpath(CERT_FILE).read_bytes())
    config = secure_config(secure_plant, tmp_path / "client", server_certificate=None, trusted_certificates=str(trusted))
    adapter = OpcuaAdapter(config, hub, tmp_path)
    retries = RetryLog(adapter.log)
    with retries:
        running(adapter)
        await retries.wait(2)
    assert any("BadCertificateUntrusted" in m for m in retries.messages), retries.messages
    assert not hub.devices["secure/boiler"].online


def sha1_thumbprint(path: Path) -> str:
    fingerprint = x509.load_der_x509_certificate(path.read_bytes()).fingerprint(hashes.SHA1())
    return ":".join(f"{byte:02X}" for byte in fingerprint)


async def test_pinned_certificate_mismatch_names_both_thumbprints(secure_plant, hub, running, tmp_path):
    pinned = make_cert(tmp_path / "old-server", "urn:edged:test:server") / CERT_FILE  # not the one the server has
    config = secure_config(secure_plant, tmp_path / "client", server_certificate=str(pinned))
    adapter = OpcuaAdapter(config, hub, tmp_path)
    retries = RetryLog(adapter.log)
    with retries:
        running(adapter)
        await retries.wait(1)
    expected, presented = sha1_thumbprint(pinned), sha1_thumbprint(secure_plant.server_files().certificate)
    assert "server certificate mismatch" in retries.messages[0], retries.messages
    assert expected in retries.messages[0] and presented in retries.messages[0]
    assert "BadTcpInternalError" not in retries.messages[0] and "TimeoutError" not in retries.messages[0]
    (problem,) = adapter.health_problems()
    assert expected in problem and presented in problem
    with pytest.raises(CommandError, match=presented):  # a command answers with the reason too
        await adapter.write(Command("secure/boiler", "temperature", 1.0, Origin.API))
    assert not hub.devices["secure/boiler"].online


async def test_server_restart_logs_one_line_and_no_library_traceback(hub, watch, running, tmp_path, caplog):
    plant = PlantServer(free_port())
    await plant.start()
    config = OpcuaConfig.model_validate({
        "type": "opcua", "name": "plc", "endpoint": plant.endpoint, "keepalive": 0.5,
        "reconnect": {"initial": 0.2, "maximum": 0.5}, "subscription": {"publishing_interval": 0.05},
        "devices": [{"id": "boiler", "nodes": [{"key": "temperature", "node": "ns=2;s=Boiler.Temperature"},
                                               {"key": "counter", "node": "ns=2;s=Boiler.Counter", "poll": 0.05}]}],
    })  # fmt: skip
    adapter = OpcuaAdapter(config, hub, tmp_path)
    running(adapter)
    try:
        await watch.until(lambda: (device := hub.devices.get("plc/boiler")) is not None and device.online)
        await plant.stop()
        await watch.until(lambda: not hub.devices["plc/boiler"].online)
        await plant.start()
        await watch.until(lambda: hub.devices["plc/boiler"].online)
        records = list(caplog.records)
        assert adapter.health_problems() == []
    finally:
        await plant.stop()
    library = [r for r in records if r.name.startswith("asyncua.client")]
    assert not [r for r in library if r.exc_info or r.levelno >= logging.WARNING], [r.getMessage() for r in library]
    ours = [r for r in records if r.name.startswith("edged") and r.levelno >= logging.WARNING]
    assert not any(r.exc_info for r in ours)
    assert sum("lost the connection" in r.getMessage() for r in ours) == 1, [r.getMessage() for r in ours]
