"""The names the status API answers to and the web origins that may write to it.

A browser says where it thinks it is in ``Host`` and, with a write, which
page asked in ``Origin``. ``Authority`` and ``WebOrigin`` are those headers
(and the ``status.http.allowed_hosts`` / ``allowed_origins`` entries)
parsed into values that compare reliably: host names in lower case, IP
addresses in their canonical form (an IPv4-mapped IPv6 address as the IPv4
one), IPv6 without brackets.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443}

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")

HOST_EXPECTED = "expected a host name or address with an optional port, such as gateway.lan, gateway.lan:8080 or [fd00::1]:8080"
ORIGIN_EXPECTED = "expected an origin: http:// or https://, a host and an optional port, such as https://gateway.lan"


def canonical_host(host: str) -> str:
    """``host`` as it compares: an address in canonical form, a name in lower case; ValueError if it is neither."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower()
        if len(name) > 253 or not _NAME.fullmatch(name):
            raise ValueError(HOST_EXPECTED) from None
        return name
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


@dataclass(frozen=True, slots=True)
class Authority:
    """``host[:port]`` as a ``Host`` header carries it; ``port`` is None when not given."""

    host: str
    port: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", canonical_host(self.host))
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"expected a port from 1 to 65535; got {self.port}")

    @classmethod
    def parse(cls, text: str) -> Authority:
        if text.startswith("["):
            host, closed, rest = text[1:].partition("]")
            if not closed or ":" not in host:
                raise ValueError(HOST_EXPECTED)
        else:
            host, colon, port = text.partition(":")
            rest = colon + port
        if rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:])):
            raise ValueError(HOST_EXPECTED)
        return cls(host, int(rest[1:]) if rest else None)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class WebOrigin:
    """``scheme://host[:port]`` as an ``Origin`` header carries it; the port is always known."""

    scheme: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.scheme not in DEFAULT_PORTS:
            raise ValueError(ORIGIN_EXPECTED)
        object.__setattr__(self, "host", Authority(self.host, self.port).host)

    @classmethod
    def parse(cls, text: str) -> WebOrigin:
        scheme, separator, rest = text.partition("://")
        scheme = scheme.lower()
        if not separator or scheme not in DEFAULT_PORTS:
            raise ValueError(ORIGIN_EXPECTED)
        try:
            authority = Authority.parse(rest.removesuffix("/"))
        except ValueError:
            raise ValueError(ORIGIN_EXPECTED) from None
        return cls(scheme, authority.host, authority.port or DEFAULT_PORTS[scheme])

    def __str__(self) -> str:
        authority = Authority(self.host, None if self.port == DEFAULT_PORTS[self.scheme] else self.port)
        return f"{self.scheme}://{authority}"


def host_entry(text: str) -> str:
    """An ``allowed_hosts`` entry in its canonical spelling (ValueError naming what is expected)."""
    return str(Authority.parse(text))


def origin_entry(text: str) -> str:
    """An ``allowed_origins`` entry in its canonical spelling (ValueError naming what is expected)."""
    return str(WebOrigin.parse(text))
