"""Simulated OPC UA servers: asyncua's own server, which edged reads, subscribes to and writes as it would a real one.

``Peer`` listens on a loopback port, with no security or with signed and
encrypted channels (a certificate of its own, trusting one client
certificate), for anonymous sessions or for the user names and passwords it
is given. A subclass fills its address space in ``populate``; ``add_object``
adds an object with typed variables, which ``set`` and ``get`` then change
and read by name, with a status code, as the server's own process would.

``Press`` is the machine of ``edged demo``: ``Temperature`` (rises while
running, cools when stopped: it crosses 80 Cel every minute or so),
``SpindleSpeed``, a writable ``Running`` and a ``PartsMade`` counter, each
``step`` moving them on.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Node, Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from edged.adapters.opcua.certs import CERT_FILE, KEY_FILE, CertificateFiles, write_certificate

SECURE_POLICIES = [
    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Basic256Sha256_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
]


@dataclass
class Peer:
    """An asyncua server at ``opc.tcp://127.0.0.1:<port><path>``."""

    port: int
    path: str = "/edged/"
    name: str = "edged simulated server"
    application_uri: str = "urn:edged:simulator"
    security: bool = False  # True: only signed (and encrypted) channels, from ``trusted_client``
    cert_dir: Path | None = None  # where the server's own key and certificate are made
    trusted_client: Path | None = None  # the client certificate the server trusts
    users: dict[str, str] | None = None  # username -> password; None: anonymous sessions
    server: Server | None = None
    nodes: dict[str, Node] = field(default_factory=dict)  # variables by name
    types: dict[str, ua.VariantType] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        server = Server(user_manager=_Users(self.users) if self.users is not None else None)
        await server.init()
        if self.users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        server.set_endpoint(self.endpoint)
        server.set_server_name(self.name)
        if self.security:
            await self._secure(server)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        await self.populate(server)
        await server.start()
        self.server = server

    async def populate(self, server: Server) -> None:
        """Fill the address space before the server listens."""

    async def _secure(self, server: Server) -> None:
        assert self.cert_dir is not None and self.trusted_client is not None
        files = self.server_files()
        await server.load_certificate(str(files.certificate))
        await server.load_private_key(str(files.private_key))
        await server.set_application_uri(self.application_uri)
        server.set_security_policy(SECURE_POLICIES)
        trusted = self.cert_dir / "trusted"  # certificates only: the store reads every .der/.pem
        trusted.mkdir(exist_ok=True)
        (trusted / "client.der").write_bytes(self.trusted_client.read_bytes())
        store = TrustStore([trusted], [])
        await store.load()
        options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        server.set_certificate_validator(CertificateValidator(options, store).validate)

    def server_files(self) -> CertificateFiles:
        """The server's own key and certificate, made once per ``cert_dir``."""
        assert self.cert_dir is not None
        directory = self.cert_dir / "server"
        if not (directory / CERT_FILE).exists():
            return write_certificate(directory, self.application_uri, host_name="localhost")
        return CertificateFiles(directory / CERT_FILE, directory / KEY_FILE)

    async def add_object(
        self, server: Server, ns: int, name: str, variables: dict[str, ua.Variant], writable: frozenset[str] | None = None
    ) -> Node:
        """An object ``name`` (node id ``ns=<ns>;s=<name>``) under Objects with ``variables``
        (node ids ``<name>.<variable>``); all of them writable by clients unless ``writable`` names some."""
        obj = await server.nodes.objects.add_object(ua.NodeId(name, ns), ua.QualifiedName(name, ns))
        for key, value in variables.items():
            node = await obj.add_variable(ua.NodeId(f"{name}.{key}", ns), ua.QualifiedName(key, ns), value)
            if writable is None or key in writable:
                await node.set_writable()
            self.nodes[key] = node
            self.types[key] = value.VariantType
        return obj

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def set(self, name: str, value: object, status: int = ua.StatusCodes.Good) -> None:
        """Give the variable ``name`` a new value (of its own type) and status."""
        variant = ua.Variant(value, self.types[name])
        await self.nodes[name].write_value(ua.DataValue(variant, StatusCode=ua.StatusCode(status)))

    async def get(self, name: str) -> object:
        return await self.nodes[name].read_value()


class _Users:
    """Accepts only the configured username/password pairs (asyncua's UserManager seam)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass
class Press(Peer):
    """A hydraulic press in namespace ``urn:edged:demo`` (index 2), object ``Press``."""

    path: str = "/edged/demo"
    name: str = "edged demo press"
    namespace: str = "urn:edged:demo"
    temperature: float = 60.0
    parts: int = 0

    async def populate(self, server: Server) -> None:
        ns = await server.register_namespace(self.namespace)
        variables = {
            "Temperature": ua.Variant(self.temperature, ua.VariantType.Double),
            "SpindleSpeed": ua.Variant(0.0, ua.VariantType.Double),
            "Running": ua.Variant(True, ua.VariantType.Boolean),
            "PartsMade": ua.Variant(self.parts, ua.VariantType.Int32),
        }
        await self.add_object(server, ns, "Press", variables, writable=frozenset({"Running"}))

    async def step(self, rng: random.Random, now: float) -> None:
        """Move the press on to time ``now`` (seconds)."""
        running = await self.get("Running")
        # The press heats while running, with a slow swing that takes it past 80 Cel about once a minute.
        target = (72.0 + 12.0 * math.sin(now / 10.0)) if running else 25.0
        self.temperature += (target - self.temperature) * 0.3 + rng.gauss(0, 0.2)
        speed = 1450.0 + rng.gauss(0, 5.0) if running else 0.0
        if running and rng.random() < 0.5:
            self.parts += 1
        await self.set("Temperature", round(self.temperature, 2))
        await self.set("SpindleSpeed", round(speed, 1))
        await self.set("PartsMade", self.parts)
