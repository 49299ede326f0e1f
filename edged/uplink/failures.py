"""Why a connection to the cloud failed, in words the person running the gateway can act on.

``connection_failure`` looks through an uplink error's causes for the
server refusing the connection, a server certificate that did not verify
(naming the certificate's subject, read in one more handshake that does not
verify it), or credentials the server refused; any other failure is told by
its own text.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator
from typing import Any

from edged.errors import EdgedError

# MQTT CONNACK codes that refuse the credentials: 3.1.1's 4 and 5, and MQTT 5's 0x86 and 0x87.
CREDENTIALS_REFUSED = {4: "bad user name or password", 5: "not authorized", 134: "bad user name or password",
                       135: "not authorized"}  # fmt: skip
SUBJECT_TIMEOUT = 5.0  # seconds for the handshake that reads the server's certificate


async def connection_failure(exc: BaseException, config: Any) -> str:
    """``exc`` (an uplink's connection failure) in a few words; ``config`` is the uplink's."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = f"TLS verification failed: {cause.verify_message or cause.reason}"
            subject = await certificate_subject(config)
            return f"{reason}; the server's certificate is {subject}" if subject else reason
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {_where(config)}"
        code = _code(cause)
        if code in CREDENTIALS_REFUSED:
            return f"authentication failed: {CREDENTIALS_REFUSED[code]}"
    text = str(exc)
    if not text:
        return type(exc).__name__
    return text if isinstance(exc, EdgedError) else f"{type(exc).__name__}: {text}"  # edged's errors say what failed


def release(exc: BaseException) -> None:
    """Let go of the library frames behind ``exc`` (its causes' tracebacks): paho leaves the socket
    of a TLS handshake that failed open in them, and it is closed only once they are freed."""
    for cause in list(_causes(exc))[1:]:
        cause.__traceback__ = None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def _code(exc: BaseException) -> int | None:
    rc = getattr(exc, "rc", None)  # aiomqtt's MqttCodeError: an int or a paho ReasonCode
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


def _where(config: Any) -> str:
    host, port = getattr(config, "host", None), getattr(config, "port", None)
    return f"{host}:{port}" if host and port else str(getattr(config, "uri", "the server"))


async def certificate_subject(config: Any) -> str | None:
    """The subject of the certificate the server at ``config.host``:``config.port`` presents, unverified;
    None when it cannot be read."""
    host, port = getattr(config, "host", None), getattr(config, "port", None)
    if not host or not port:
        return None
    tls = getattr(config, "tls", None)

    def client_context() -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only to read what the server presents; nothing is sent over it
        if tls is not None and tls.cert and tls.key:
            context.load_cert_chain(str(tls.cert), str(tls.key))
        return context

    try:
        context = await asyncio.to_thread(client_context)
        async with asyncio.timeout(SUBJECT_TIMEOUT):
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except (OSError, TimeoutError, ssl.SSLError):
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if der is None:
        return None
    from cryptography import x509  # only when a certificate is refused: it costs 8 MiB a gateway otherwise keeps

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()
