"""An asyncua client for one server, set up the same way for the adapter and for ``edged opcua browse``.

- ``make_client`` applies the endpoint, security (policy, mode, client
  certificate and key, server trust) and user name settings.
- ``check_pinned_certificate`` asks the server which certificate it presents
  (GetEndpoints, which every server answers without security) before a
  session is opened with a pinned ``server_certificate``: when it is another
  one, the session would fail with an unhelpful transport error (the server
  cannot decrypt what was encrypted for the pinned key), so this says so,
  naming both thumbprints.
- ``quiet_expected_disconnects`` keeps asyncua from logging a traceback when
  a server stops or the network drops: edged logs one line for that itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorMethod, CertificateValidatorOptions
from cryptography.hazmat.primitives import serialization

from edged.adapters.opcua.config import SecurityConfig
from edged.errors import AdapterError

POLICIES = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}
TRANSPORT_ERRORS = (ConnectionError, OSError, TimeoutError)


class CertificateMismatch(AdapterError):
    """The server presents another certificate than the pinned ``server_certificate``."""


async def make_client(
    endpoint: str,
    security: SecurityConfig,
    *,
    name: str,
    timeout: float,
    keepalive: float = 1.0,
    session_timeout: float = 60.0,
    username: str | None = None,
    password: str | None = None,
) -> Client:
    """A client for ``endpoint`` with these settings, not connected yet; ``AdapterError`` if security cannot be set up."""
    client = Client(endpoint, timeout=timeout, watchdog_intervall=keepalive)
    client.name = client.description = f"edged {name}"
    client.session_timeout = int(session_timeout * 1000)
    client.application_uri = security.application_uri
    if username is not None and password is not None:
        client.set_user(username)
        client.set_password(password)
    if security.policy != "None":
        key_password = security.private_key_password
        try:
            await client.set_security(
                POLICIES[security.policy],
                str(security.certificate),
                str(security.private_key),
                key_password.get_secret_value() if key_password else None,
                str(security.server_certificate) if security.server_certificate else None,
                getattr(ua.MessageSecurityMode, security.mode),
            )
        except (ua.UaError, ValueError, OSError) as exc:
            raise AdapterError(f"cannot set up {security.policy} {security.mode}: {exc}") from exc
        if security.trusted_certificates is not None:
            client.certificate_validator = await _server_validator(security.trusted_certificates)
    return client


async def _server_validator(folder: Path) -> CertificateValidatorMethod:
    """Accept a server certificate only if it is valid now, names the server's
    ApplicationUri, is meant for a server, and is in (or signed by a
    certificate in) ``folder``; read again at every connect."""
    try:
        store = TrustStore([folder], [])
        await store.load()
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot load the trusted certificates in {folder}: {exc}") from exc
    options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_SERVER
    return CertificateValidator(options, store).validate


def thumbprint(der: bytes) -> str:
    """A certificate's SHA-1 thumbprint as OPC UA tools and ``openssl x509 -fingerprint -sha1`` show it."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha1(der, usedforsecurity=False).digest())


async def check_pinned_certificate(endpoint: str, security: SecurityConfig, timeout: float) -> None:
    """Raise ``CertificateMismatch`` if the server presents another certificate than the pinned one.

    Does nothing without a pinned certificate, or when the server does not list
    its endpoints (the session is then tried as usual). A server that cannot be
    reached raises the transport error.
    """
    if security.policy == "None" or security.server_certificate is None:
        return
    try:
        pinned = (await uacrypto.load_certificate(str(security.server_certificate))).public_bytes(
            serialization.Encoding.DER
        )
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read server_certificate {security.server_certificate}: {exc}") from exc
    probe = Client(endpoint, timeout=timeout)
    try:
        endpoints = await probe.connect_and_get_server_endpoints()
    except ua.UaError:
        return
    presented = _presented(endpoints, security)
    if presented is None or presented == pinned:
        return
    raise CertificateMismatch(
        f"server certificate mismatch: server_certificate {security.server_certificate} has SHA-1 thumbprint "
        f"{thumbprint(pinned)}, but {endpoint} presents a certificate with SHA-1 thumbprint {thumbprint(presented)} "
        f"(if the server's certificate was replaced on purpose, put the new one in server_certificate)"
    )


def _presented(endpoints: list[ua.EndpointDescription], security: SecurityConfig) -> bytes | None:
    """The certificate the server presents on the endpoint edged uses (any secure endpoint if none matches)."""
    policy_uri = POLICIES[security.policy].URI
    mode = getattr(ua.MessageSecurityMode, security.mode)
    certificates = [
        (e.SecurityPolicyUri == policy_uri and e.SecurityMode == mode, e.ServerCertificate)
        for e in endpoints
        if e.ServerCertificate
    ]
    if not certificates:
        return None
    _, der = max(certificates, key=lambda c: c[0])
    return uacrypto.x509_from_der(der).public_bytes(serialization.Encoding.DER)  # the first of a chain


# -- asyncua's log on expected disconnects --------------------------------------

_CLIENT_LOGGERS = (
    "asyncua.client.client",
    "asyncua.client.ua_client",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.client.ua_session",
    "asyncua.client.ua_session.UaSession",
)
_DISCONNECT_CODES = frozenset({
    ua.StatusCodes.BadShutdown,
    ua.StatusCodes.BadServerHalted,
    ua.StatusCodes.BadServerNotConnected,
    ua.StatusCodes.BadCommunicationError,
    ua.StatusCodes.BadConnectionClosed,
    ua.StatusCodes.BadSecureChannelClosed,
    ua.StatusCodes.BadSecureChannelIdInvalid,
    ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadSessionIdInvalid,
    ua.StatusCodes.BadTimeout,
})
# asyncua's warnings while it tears down a connection that is already gone
_TEARDOWN_WARNINGS = frozenset({
    "close_session was called but connection is closed",
    "close_session but connection wasn't established",
    "close_secure_channel was called but connection is closed",
})


def _expected(exc: BaseException) -> bool:
    if isinstance(exc, ua.UaStatusCodeError):
        return exc.code in _DISCONNECT_CODES
    return isinstance(exc, (*TRANSPORT_ERRORS, asyncio.CancelledError))


class _ExpectedDisconnects(logging.Filter):
    """Turns asyncua's tracebacks for a lost connection, and its teardown warnings, into debug lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _expected(exc):
            record.msg, record.args = f"{record.getMessage()} ({type(exc).__name__}: {exc})", None
            record.exc_info = record.exc_text = None
        elif not (record.levelno == logging.WARNING and record.msg in _TEARDOWN_WARNINGS):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_FILTER = _ExpectedDisconnects()


def quiet_expected_disconnects() -> None:
    """Install the filter on asyncua's client loggers (once; asyncua's other records are untouched)."""
    for name in _CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
