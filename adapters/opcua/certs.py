"""A client key and self-signed application certificate for OPC UA security.

OPC UA servers identify a client application by the URI in its
certificate's SubjectAltName, which must equal the ``ApplicationUri`` the
client sends; ``make_certificate`` puts it there, with the host name as a
DNS name, and the key usages servers check.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edged.identity import self_signed_certificate

CERT_FILE = "edged-opcua-cert.der"
KEY_FILE = "edged-opcua-key.pem"


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    certificate: Path  # DER
    private_key: Path  # PEM, unencrypted, mode 0600


def make_certificate(
    application_uri: str,
    *,
    common_name: str = "edged",
    host_name: str | None = None,
    days: int = 3650,
    key_size: int = 2048,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """Return a new RSA key and a self-signed certificate for ``application_uri``."""
    if ":" not in application_uri:
        raise ValueError(f"expected an application URI such as urn:example:edged; got {application_uri!r}")
    host_name = host_name or socket.gethostname()
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=True,
        data_encipherment=True,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = self_signed_certificate(key, name, days, [
        (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(application_uri), x509.DNSName(host_name)]), False),
        (usage, True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
    ])
    return key, certificate


def write_certificate(
    directory: Path, application_uri: str, *, overwrite: bool = False, **options: object
) -> CertificateFiles:
    """Write a new key (``edged-opcua-key.pem``, 0600) and certificate
    (``edged-opcua-cert.der``) into ``directory``; refuse to replace existing
    files unless ``overwrite``."""
    files = CertificateFiles(directory / CERT_FILE, directory / KEY_FILE)
    if not overwrite:
        for path in (files.certificate, files.private_key):
            if path.exists():
                raise FileExistsError(f"{path} exists; pass --force to replace it")
    key, certificate = make_certificate(application_uri, **options)  # type: ignore[arg-type]
    directory.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(files.private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    return files
