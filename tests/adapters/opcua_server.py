"""An in-process asyncua server for the OPC UA adapter tests (a real peer on a free loopback port)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Node, Server, ua, uamethod
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from edged.adapters.opcua.certs import CERT_FILE, KEY_FILE, CertificateFiles, write_certificate

NAMESPACE = "urn:edged:test:plant"
OTHER_NAMESPACE = "urn:edged:test:other"  # a second vendor's namespace, for servers that reorder theirs
SERVER_URI = "urn:edged:test:server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PlantServer:
    """A Boiler object with a few typed variables and two methods, served on ``port``."""

    port: int
    security: bool = False
    cert_dir: Path | None = None
    trusted_client: Path | None = None  # client certificate the server trusts
    users: dict[str, str] | None = None  # username -> password; None: anonymous sessions
    namespace: str = NAMESPACE  # the plant's namespace URI
    # A namespace registered before the plant's (so the plant's index is one higher), with a
    # decoy Boiler whose nodes have the plant's identifiers and browse names: what a node
    # configured by the plant's old index would find there.
    shadow: str | None = None
    server: Server | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    types: dict[str, ua.VariantType] = field(default_factory=dict)
    calls: list[tuple[str, object]] = field(default_factory=list)  # (method, argument) of every method call
    decoys: dict[str, Node] = field(default_factory=dict)  # the shadow namespace's nodes, by name

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/edged/"

    async def start(self) -> None:
        server = Server(user_manager=_Users(self.users) if self.users is not None else None)
        await server.init()
        if self.users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        server.set_endpoint(self.endpoint)
        server.set_server_name("edged test plant")
        if self.security:
            assert self.cert_dir is not None and self.trusted_client is not None
            files = self.server_files()
            await server.load_certificate(str(files.certificate))
            await server.load_private_key(str(files.private_key))
            await server.set_application_uri(SERVER_URI)
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
                    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
                ]
            )
            trusted = self.cert_dir / "trusted"  # certificates only: the store reads every .der/.pem
            trusted.mkdir(exist_ok=True)
            (trusted / "client.der").write_bytes(self.trusted_client.read_bytes())
            store = TrustStore([trusted], [])
            await store.load()
            options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
            server.set_certificate_validator(CertificateValidator(options, store).validate)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.decoys.clear()
        if self.shadow is not None:
            other = await server.register_namespace(self.shadow)
            decoy = await server.nodes.objects.add_object(ua.NodeId("Boiler", other), ua.QualifiedName("Boiler", other))
            for name, value in (("Temperature", -99.0), ("Setpoint", -99.0)):
                variant = ua.Variant(value, ua.VariantType.Double if name == "Temperature" else ua.VariantType.Float)
                node = await decoy.add_variable(ua.NodeId(f"Boiler.{name}", other), ua.QualifiedName(name, other), variant)
                await node.set_writable()
                self.decoys[name] = node
        ns = await server.register_namespace(self.namespace)
        boiler = await server.nodes.objects.add_object(ua.NodeId("Boiler", ns), ua.QualifiedName("Boiler", ns))
        specs = {
            "Temperature": ua.Variant(20.0, ua.VariantType.Double),
            "Setpoint": ua.Variant(21.0, ua.VariantType.Float),
            "Level": ua.Variant(7, ua.VariantType.Byte),
            "Pump": ua.Variant(False, ua.VariantType.Boolean),
            "Counter": ua.Variant(0, ua.VariantType.UInt32),
            "Mode": ua.Variant("auto", ua.VariantType.String),
            "Profile": ua.Variant([20.0, 35.5, 50.0], ua.VariantType.Double),  # an array: a recipe's temperatures
        }
        for name, value in specs.items():
            node = await boiler.add_variable(ua.NodeId(f"Boiler.{name}", ns), ua.QualifiedName(name, ns), value)
            await node.set_writable()
            self.nodes[name] = node
            self.types[name] = value.VariantType

        # Methods: Ramp(target: Double) -> Boolean sets the setpoint; Reset() zeroes the counter.
        @uamethod
        async def ramp(parent: ua.NodeId, target: float) -> bool:
            self.calls.append(("Ramp", target))
            await self.nodes["Setpoint"].write_value(ua.Variant(target, ua.VariantType.Float))
            return True

        @uamethod
        async def reset(parent: ua.NodeId) -> None:
            self.calls.append(("Reset", None))
            await self.nodes["Counter"].write_value(ua.Variant(0, ua.VariantType.UInt32))

        await boiler.add_method(ua.NodeId("Boiler.Ramp", ns), ua.QualifiedName("Ramp", ns), ramp,
                                [ua.VariantType.Double], [ua.VariantType.Boolean])  # fmt: skip
        await boiler.add_method(ua.NodeId("Boiler.Reset", ns), ua.QualifiedName("Reset", ns), reset, [], [])
        await server.start()
        self.server = server

    def server_files(self) -> CertificateFiles:
        """The server's own key and certificate, made once per test folder."""
        assert self.cert_dir is not None
        directory = self.cert_dir / "server"
        if not (directory / CERT_FILE).exists():
            return write_certificate(directory, SERVER_URI, host_name="localhost")
        return CertificateFiles(directory / CERT_FILE, directory / KEY_FILE)

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def set(self, name: str, value: object, status: int = ua.StatusCodes.Good) -> None:
        variant = ua.Variant(value, self.types[name])
        await self.nodes[name].write_value(ua.DataValue(variant, StatusCode=ua.StatusCode(status)))

    async def get(self, name: str) -> object:
        return await self.nodes[name].read_value()

    async def namespace_index(self) -> int:
        assert self.server is not None
        return await self.server.get_namespace_index(self.namespace)


class _Users:
    """Accepts only the configured username/password pairs (asyncua's UserManager seam)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver, username=None, password=None, certificate=None) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class FreezableProxy:
    """A loopback TCP relay in front of a server. ``freeze()`` makes the
    connections open so far a black hole (bytes are read and dropped, sockets
    stay open), as when a server hangs or a network path dies silently; new
    connections relay normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._frozen: set[int] = set()
        self._next_id = 0
        self._open: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self._frozen |= self._open

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        self._next_id += 1
        conn = self._next_id
        self._open.add(conn)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(conn, source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, conn: int, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if conn not in self._frozen:
                    sink.write(data)
                    await sink.drain()
        if conn not in self._frozen:
            sink.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RetryLog(logging.Handler):
    """Collects an adapter's warnings; ``await wait(n)`` returns once it has
    logged ``n`` "retrying" lines (an event per line, no polling)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logging.WARNING)
        self.logger = logger
        self.messages: list[str] = []
        self._changed = asyncio.Event()

    def __enter__(self) -> RetryLog:
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self._changed.set()

    async def wait(self, retries: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while sum("retrying" in m for m in self.messages) < retries:
                self._changed.clear()
                await self._changed.wait()
