"""The OPC UA adapter tests' peer: a simulated server holding a Boiler (a real asyncua server on a free loopback port)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

from asyncua import Node, Server, ua, uamethod

from edged.adapters.opcua.simulator import Peer

NAMESPACE = "urn:edged:test:plant"
OTHER_NAMESPACE = "urn:edged:test:other"  # a second vendor's namespace, for servers that reorder theirs
SERVER_URI = "urn:edged:test:server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PlantServer(Peer):
    """A Boiler object with a few typed variables and two methods, served on ``port``."""

    name: str = "edged test plant"
    application_uri: str = SERVER_URI
    namespace: str = NAMESPACE  # the plant's namespace URI
    # A namespace registered before the plant's (so the plant's index is one higher), with a
    # decoy Boiler whose nodes have the plant's identifiers and browse names: what a node
    # configured by the plant's old index would find there.
    shadow: str | None = None
    calls: list[tuple[str, object]] = field(default_factory=list)  # (method, argument) of every method call
    decoys: dict[str, Node] = field(default_factory=dict)  # the shadow namespace's nodes, by name

    async def populate(self, server: Server) -> None:
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
        boiler = await self.add_object(server, ns, "Boiler", {
            "Temperature": ua.Variant(20.0, ua.VariantType.Double),
            "Setpoint": ua.Variant(21.0, ua.VariantType.Float),
            "Level": ua.Variant(7, ua.VariantType.Byte),
            "Pump": ua.Variant(False, ua.VariantType.Boolean),
            "Counter": ua.Variant(0, ua.VariantType.UInt32),
            "Mode": ua.Variant("auto", ua.VariantType.String),
            "Profile": ua.Variant([20.0, 35.5, 50.0], ua.VariantType.Double),  # an array: a recipe's temperatures
        })  # fmt: skip

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

    async def namespace_index(self) -> int:
        assert self.server is not None
        return await self.server.get_namespace_index(self.namespace)


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
