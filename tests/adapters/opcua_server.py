"""An in-process asyncua server for the OPC UA adapter tests (a real peer on a free loopback port)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import Node, Server, ua
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from edged.adapters.opcua.certs import CERT_FILE, KEY_FILE, CertificateFiles, write_certificate

NAMESPACE = "urn:edged:test:plant"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PlantServer:
    """A Boiler object with a few typed variables, served on ``port``."""

    port: int
    security: bool = False
    cert_dir: Path | None = None
    trusted_client: Path | None = None  # client certificate the server trusts
    server: Server | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    types: dict[str, ua.VariantType] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/edged/"

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("edged test plant")
        if self.security:
            assert self.cert_dir is not None and self.trusted_client is not None
            files = self.server_files()
            await server.load_certificate(str(files.certificate))
            await server.load_private_key(str(files.private_key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            trusted = self.cert_dir / "trusted"  # certificates only: the store reads every .der/.pem
            trusted.mkdir(exist_ok=True)
            (trusted / "client.der").write_bytes(self.trusted_client.read_bytes())
            store = TrustStore([trusted], [])
            await store.load()
            options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
            server.set_certificate_validator(CertificateValidator(options, store).validate)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(NAMESPACE)
        boiler = await server.nodes.objects.add_object(ua.NodeId("Boiler", ns), ua.QualifiedName("Boiler", ns))
        specs = {
            "Temperature": ua.Variant(20.0, ua.VariantType.Double),
            "Setpoint": ua.Variant(21.0, ua.VariantType.Float),
            "Level": ua.Variant(7, ua.VariantType.Byte),
            "Pump": ua.Variant(False, ua.VariantType.Boolean),
            "Counter": ua.Variant(0, ua.VariantType.UInt32),
            "Mode": ua.Variant("auto", ua.VariantType.String),
        }
        for name, value in specs.items():
            node = await boiler.add_variable(ua.NodeId(f"Boiler.{name}", ns), ua.QualifiedName(name, ns), value)
            await node.set_writable()
            self.nodes[name] = node
            self.types[name] = value.VariantType
        await server.start()
        self.server = server

    def server_files(self) -> CertificateFiles:
        """The server's own key and certificate, made once per test folder."""
        assert self.cert_dir is not None
        directory = self.cert_dir / "server"
        if not (directory / CERT_FILE).exists():
            return write_certificate(directory, "urn:edged:test:server", host_name="localhost")
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
