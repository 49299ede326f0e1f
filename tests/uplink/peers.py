"""Real peers for uplink tests: mosquitto (plain or TLS with client
certificates), libcoap's coap-server, and a counting MQTT subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import getpass
import ipaddress
import json
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiocoap
import aiocoap.error
import aiomqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import TypeAdapter

from edged.hub import Hub
from edged.model import Command, Device, Point, ValueType
from edged.uplink.coap import credentials
from edged.uplink.config import CoapUplinkConfig, UplinkConfig

P = TypeVar("P")  # a test peer with run() and a _subscribed event


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``port`` (a process start-up, not a test sync)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class Broker:
    """A mosquitto on a free loopback port; ``stop()``/``start()`` keep its persistent sessions."""

    workdir: Path
    port: int = field(default_factory=free_port)
    tls: dict[str, Path] | None = None
    users: dict[str, str] | None = None  # when set, only these may connect
    extra: list[str] = field(default_factory=list)  # more mosquitto.conf lines (acl_file, max_packet_size, ...)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "log_dest stderr",
            f"user {getpass.getuser()}",  # run as root, mosquitto would switch to a user who cannot read tmp_path
        ]
        if self.tls:
            lines += [
                f"cafile {self.tls['ca']}",
                f"certfile {self.tls['server_cert']}",
                f"keyfile {self.tls['server_key']}",
                "require_certificate true",
            ]
        if self.users:
            passwords = self.workdir / "passwords"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            lines.append(f"password_file {passwords}")
        lines += self.extra
        conf.write_text("\n".join(lines) + "\n")
        with (self.workdir / "mosquitto.log").open("ab") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
        wait_listening(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def make_certs(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
              ca: bool = False, san: bool = False) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edged test CA")])
    ca_cert = issue("edged test CA", ca_key, ca_name, ca_key, ca=True)
    files: dict[str, Path] = {}

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
        files[f"{stem}_cert" if key else stem] = path = directory / f"{stem}.crt"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            files[f"{stem}_key"] = key_path = directory / f"{stem}.key"
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )

    write("ca", ca_cert, None)
    for stem in ("server", "client", "stranger"):
        key = ec.generate_private_key(ec.SECP256R1())
        if stem == "stranger":  # signed by its own, untrusted CA
            cert = issue(stem, key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]), key)
        else:
            cert = issue(stem, key, ca_name, ca_key, san=stem == "server")
        write(stem, cert, key)
    return files


class Collector:
    """A persistent-session QoS 1 subscriber that records every message it gets."""

    def __init__(self, port: int, topic: str, client_id: str = "collector") -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id
        self.messages: list[tuple[str, bytes]] = []
        self.readings: dict[str, list[tuple[int, list[object]]]] = defaultdict(list)  # device -> (seq, reading)
        self.seqs: dict[str, list[int]] = defaultdict(list)  # device -> seq of each message, duplicates included
        self._changed = asyncio.Event()
        self._subscribed = asyncio.Event()
        self.json: list[dict[str, object]] = []

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=False, max_queued_incoming_messages=0
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        self._take(str(message.topic), message.payload)  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # broker down: try again (it is restarted by the test)

    def _take(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))
        with contextlib.suppress(ValueError):
            data = json.loads(payload)
            if isinstance(data, dict):
                self.json.append(data)
                if "readings" in data:
                    device = data["device"]
                    self.seqs[device].append(data["seq"])
                    self.readings[device].extend((data["seq"], r) for r in data["readings"])
        self._changed.set()

    async def until(self, predicate: Callable[[], object], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def count(self) -> int:
        return sum(len(v) for v in self.readings.values())


@contextlib.asynccontextmanager
async def subscribed(peer: P) -> AsyncIterator[P]:
    """``peer.run()`` in a task, from the moment its subscriptions are in place to the end of the block."""
    task = asyncio.create_task(peer.run())
    try:
        async with asyncio.timeout(10):
            await peer._subscribed.wait()
        yield peer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def collecting(port: int, topic: str = "#", client_id: str = "collector") -> contextlib.AbstractAsyncContextManager[Collector]:
    return subscribed(Collector(port, topic, client_id))


def recording_relay(hub: Hub) -> list[Command]:
    """Add an online ``sim/relay`` with a writable ``on`` point; return the list its writes land in."""
    hub.add_device(Device("sim/relay", "sim", points={"on": Point("on", ValueType.BOOL, writable=True)}, online=True))
    writes: list[Command] = []

    async def write(command: Command) -> None:
        writes.append(command)

    hub.attach_writer("sim", write)
    return writes


# -- CoAP ----------------------------------------------------------------------

PSK = "edged-test-key"


def free_udp_pair() -> int:
    """A port p such that p and p + 1 are both free for UDP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP port pair")


class CoapServer:
    """coap-server-openssl with a PSK on a free port pair; ``port`` is its DTLS port.

    Started with ``-d``, so that the first POST to an unknown path creates a
    resource holding the payload, which a GET then reads back (``-L 3``:
    libcoap reassembles block-wise bodies). DTLS listens on port+1 of ``-p``."""

    def __init__(self, log: Path) -> None:
        self.plain_port = free_udp_pair()
        self.port = self.plain_port + 1
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                "coap-server-openssl", "-A", "127.0.0.1", "-p", str(self.plain_port), "-k", PSK,
                "-d", "50", "-L", "3", "-v", "4", stdout=log, stderr=log,
            )
        context = await aiocoap.Context.create_client_context()
        try:
            async with asyncio.timeout(10):  # ready once it answers plain CoAP
                while True:
                    with contextlib.suppress(aiocoap.error.Error, TimeoutError):
                        async with asyncio.timeout(0.5):
                            probe = aiocoap.Message(code=aiocoap.GET, uri=f"coap://127.0.0.1:{self.plain_port}/")
                            await context.request(probe).response
                            return
        finally:
            await context.shutdown()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


def coap_config(port: int, psk: str = PSK, **extra: Any) -> CoapUplinkConfig:
    config = TypeAdapter(UplinkConfig).validate_python(
        {"type": "coap", "uri": f"coaps://127.0.0.1:{port}/gw/readings", "identity": "gw1", "psk": psk,
         "event_uri": f"coaps://127.0.0.1:{port}/gw/events", "timeout": 2} | extra
    )
    assert isinstance(config, CoapUplinkConfig)
    return config


@contextlib.asynccontextmanager
async def coap_client(config: CoapUplinkConfig) -> AsyncIterator[aiocoap.Context]:
    """A client context with the gateway's PSK: the cloud side of a test."""
    context = await aiocoap.Context.create_client_context()
    try:
        context.client_credentials.load_from_dict(credentials(config))
        yield context
    finally:
        await context.shutdown()


async def coap_request(config: CoapUplinkConfig, code: aiocoap.Code, uri: str, payload: bytes = b"", **options: Any) -> bytes:
    async with coap_client(config) as context:
        response = await context.request(aiocoap.Message(code=code, uri=uri, payload=payload, **options)).response
        assert response.code.is_successful(), response.code
        return response.payload
