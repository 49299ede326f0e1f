"""The gateway's identity towards the cloud: its key, CSR or certificate.

``provision`` creates (or reuses) the gateway's private key and writes a
certificate signing request for it, or a self-signed client certificate
(for tests and private brokers). Files are written atomically:
the key 0600, the CSR and certificate 0644. An existing key is kept unless
``new_key`` is given, so provisioning again never changes the gateway's
identity by accident.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edged.files import write_atomic

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

KEY_FILE = "gateway.key"
CSR_FILE = "gateway.csr"
CERT_FILE = "gateway.crt"


@dataclass(frozen=True, slots=True)
class Identity:
    """What ``provision`` produced, and what the cloud needs to know."""

    gateway_id: str
    key_path: Path
    key_created: bool
    fingerprint: str  # SHA-256 of the DER SubjectPublicKeyInfo, colon-separated hex
    csr_path: Path | None = None
    cert_path: Path | None = None


def provision(
    gateway_id: str,
    directory: Path,
    *,
    self_signed: bool = False,
    key_type: str = "ec",
    new_key: bool = False,
    days: int = 365,
    organization: str | None = None,
) -> Identity:
    """Write the key and a CSR (or a self-signed certificate) into ``directory``."""
    if not gateway_id.strip():
        raise ValueError("the gateway id is empty")
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / KEY_FILE
    key_created = new_key or not key_path.exists()
    if key_created:
        key = _generate_key(key_type)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_atomic(key_path, pem, 0o600)
    else:
        key = load_key(key_path)
    name = _subject(gateway_id, organization)
    fingerprint = public_key_fingerprint(key)
    if self_signed:
        cert = self_signed_certificate(key, name, days, [(_client_auth(), False)])
        cert_path = directory / CERT_FILE
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return Identity(gateway_id, key_path, key_created, fingerprint, cert_path=cert_path)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(_client_auth(), critical=False)
        .sign(key, hashes.SHA256())
    )
    csr_path = directory / CSR_FILE
    write_atomic(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
    return Identity(gateway_id, key_path, key_created, fingerprint, csr_path=csr_path)


def public_key_fingerprint(key: PrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return ":".join(f"{byte:02X}" for byte in digest.finalize())


def _generate_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"key type must be ec or rsa; got {key_type!r}")


def load_key(path: Path) -> PrivateKey:
    """Read an unencrypted PEM EC or RSA private key; ``ValueError`` says what is wrong."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({exc}); use --new-key to replace it") from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"{path}: expected an EC or RSA key; got {type(key).__name__}")
    return key


def _subject(gateway_id: str, organization: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _client_auth() -> x509.ExtendedKeyUsage:
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])


def self_signed_certificate(
    key: PrivateKey, name: x509.Name, days: int, extensions: list[tuple[x509.ExtensionType, bool]]
) -> x509.Certificate:
    """A self-signed end-entity certificate for ``key``, valid from five minutes ago
    for ``days``, with ``extensions`` as (extension, critical) pairs."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256())
