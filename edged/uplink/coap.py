"""CoAP uplink (aiocoap over DTLS with a pre-shared key).

Every outbox row is one confirmable POST: readings as a SenML pack in CBOR
(see ``senml``) to ``uri``, events as a CBOR map to ``event_uri`` and
command results to ``result_uri``. A row is acknowledged by a 2.xx
response. A 4.xx is a refusal (``Refused``): for good, except 4.01
Unauthorized, 4.03 Forbidden and 4.29 Too Many Requests, which may pass; a
5.xx, or no answer within ``timeout``, fails the connection and the rows are
sent again after a reconnect.

A server stays silent to a DTLS handshake made with a key it does not know
(the client sees only no answer). So when a server that has not answered
on this connection stays silent, the link asks it for a DTLS handshake of
its own (a ClientHello): a server that answers that speaks DTLS, and the
failure is told as ``DTLS handshake with host:port failed (wrong PSK or
identity?)`` rather than as no answer.

Cloud commands: with ``command_uri`` the gateway observes that resource
(RFC 7641); its representation, and every notification, is one command:
a CBOR map or a JSON object. A resource that
stays silent past its Max-Age is registered again, and a server that does
not offer Observe, or answers with an error, is read again after Max-Age
(readings keep flowing meanwhile). As the current
representation comes again after every registration, reconnect and
restart, the link remembers the last commands it took (in
``cloud-commands.json`` in the state directory) and does not hand one over
twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiocoap
import aiocoap.error
import cbor2

from edged.errors import Refused, UplinkError
from edged.model import Command
from edged.outbox import EVENT, Row
from edged.uplink import senml
from edged.uplink.commands import Rejected, SeenCommands, read_command
from edged.uplink.config import CoapUplinkConfig
from edged.uplink.link import LinkContext

log = logging.getLogger(__name__)

CBOR = 60  # application/cbor
JSON = 50  # application/json
DEFAULT_MAX_AGE = 60.0  # seconds a representation stays fresh without a Max-Age option (RFC 7252)
MIN_MAX_AGE = 5.0  # never register or poll again more often than this
PROBE_TIMEOUT = 2.0  # seconds a server has to answer a DTLS ClientHello
PASSING = {aiocoap.UNAUTHORIZED, aiocoap.FORBIDDEN, aiocoap.numbers.codes.Code.TOO_MANY_REQUESTS}  # 4.xx that may pass


class CoapLink:
    """The uplink to a CoAP server over DTLS; ``send`` returns once the server answered 2.xx."""

    def __init__(self, config: CoapUplinkConfig, context: LinkContext) -> None:
        self.config = config
        self.gateway_id = context.gateway_id
        self.coap: aiocoap.Context | None = None  # while connected
        # aiocoap pools DTLS sessions weakly: hold each server's session so
        # it is reused between POSTs and closed in order by context.shutdown().
        self.sessions: dict[str, object] = {}
        self.answered: set[str] = set()  # the servers (host:port) that answered on this connection
        self.seen = SeenCommands(context.state_dir / "cloud-commands.json")
        self._seen_loaded = False
        self.commands_repeated = 0  # commands the resource showed again, not handed over twice
        self._changed = context.changed

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        """A client context holding the DTLS session(s); always shut down."""
        if self.config.command_uri and not self._seen_loaded:
            await asyncio.to_thread(self.seen.load)
            self._seen_loaded = True
        try:
            coap = await aiocoap.Context.create_client_context()
        except OSError as exc:
            raise UplinkError(f"cannot open a CoAP client: {exc}") from exc
        try:
            coap.client_credentials.load_from_dict(credentials(self.config))
            log.info("sending to %s", self.config.uri)
            self.coap, self.sessions, self.answered = coap, {}, set()
            yield
        finally:
            self.coap = None
            await coap.shutdown()

    async def send(self, row: Row) -> None:
        config = self.config
        if row.kind == EVENT:
            event = {"type": row.subject, "gen": row.gen, "seq": row.id, **json.loads(row.payload)}
            if row.unsynced:
                event["clock"] = "unsynced"
            uri = config.event_uri or config.uri
            if row.subject == "command_result":
                uri = config.result_uri or uri
            payload, fmt = cbor2.dumps(event), CBOR
        else:
            uri = config.uri
            payload = senml.encode_row(self.gateway_id, row.subject, row.id, row.payload, row.gen, row.unsynced)
            fmt = senml.CONTENT_FORMAT
        request = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=payload, content_format=fmt)
        response = await self._answer(request, self._coap().request(request).response)
        if response.code.class_ == 4:
            raise Refused(f"POST {uri}", str(response.code), permanent=response.code not in PASSING)
        if not response.code.is_successful():
            raise UplinkError(f"POST {uri} answered {response.code}")

    async def publish_state(self, payload: bytes) -> bool:
        """PUT the state digest (JSON) to ``state_uri``, if one is configured."""
        uri = self.config.state_uri
        if uri is None:
            return False
        request = aiocoap.Message(code=aiocoap.PUT, uri=uri, payload=payload, content_format=JSON)
        response = await self._answer(request, self._coap().request(request).response)
        if not response.code.is_successful():
            raise UplinkError(f"PUT {uri} answered {response.code}")
        return True

    async def commands(self) -> AsyncIterator[Command | Rejected]:
        """Observe ``command_uri`` and yield every command it shows, once however often it
        shows it; raise ``UplinkError`` when the connection fails. Without ``command_uri``,
        nothing comes."""
        uri = self.config.command_uri
        if not uri:
            await asyncio.Event().wait()
        while True:
            request = aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0)
            exchange = self._coap().request(request)
            try:
                async with contextlib.aclosing(self._representations(request, exchange)) as shown:
                    async for payload in shown:
                        # Told apart by the first byte rather than the content-format (servers get that wrong):
                        # a CBOR map starts with 0xa0-0xbf, which JSON text never does.
                        message, raw_id = read_command(payload, "cbor" if 0xA0 <= payload[0] <= 0xBF else "json")
                        if not self.seen.take(payload, raw_id):
                            self.commands_repeated += 1
                            self._changed()
                            continue
                        await asyncio.to_thread(self.seen.save)
                        yield message
            finally:
                if not exchange.observation.cancelled:
                    exchange.observation.cancel()

    async def _representations(self, request: aiocoap.Message, exchange: Any) -> AsyncIterator[bytes]:
        """The command resource's representation and its notifications, until it falls silent past its Max-Age."""
        response = await self._answer(request, exchange.response)
        notifications = aiter(exchange.observation)
        while True:
            payload = self._command(response)
            if payload:
                yield payload
            max_age = max(MIN_MAX_AGE, DEFAULT_MAX_AGE if response.opt.max_age is None else response.opt.max_age)
            if response.opt.observe is None:  # not (or not yet) observable: read it again later
                await asyncio.sleep(max_age)
                return
            try:
                async with asyncio.timeout(max_age + self.config.timeout):
                    response = await anext(notifications)
            except (TimeoutError, StopAsyncIteration, aiocoap.error.ObservationCancelled, aiocoap.error.NotObservable):
                return  # register again
            except aiocoap.error.Error as exc:
                raise UplinkError(f"observing {self.config.command_uri} failed: {exc}") from exc

    def _command(self, response: aiocoap.Message) -> bytes:
        """The command message a response shows (empty when it shows none)."""
        if not response.code.is_successful():
            if response.code != aiocoap.NOT_FOUND:  # 4.04: no command yet
                # Readings keep flowing; the resource is read again after Max-Age.
                log.warning("GET %s answered %s; commands are not taken until it answers 2.05",
                            self.config.command_uri, response.code)  # fmt: skip
            return b""
        return response.payload  # empty: no command yet

    def _coap(self) -> aiocoap.Context:
        if self.coap is None:
            raise UplinkError("not connected")
        return self.coap

    async def _answer(self, request: aiocoap.Message, response: asyncio.Future[aiocoap.Message]) -> aiocoap.Message:
        """The response to ``request``, or UplinkError when it fails or does not come within ``timeout``."""
        uri, method = request.get_request_uri(), request.code
        server = urlsplit(uri)
        try:
            async with asyncio.timeout(self.config.timeout):
                answer = await response
        except TimeoutError as exc:
            if server.scheme == "coaps" and server.netloc not in self.answered \
                    and await speaks_dtls(server.hostname or "", server.port or aiocoap.COAPS_PORT):
                raise UplinkError(f"DTLS handshake with {server.netloc} failed (wrong PSK or identity?)") from exc
            raise UplinkError(f"no answer from {uri} within {self.config.timeout:g} s") from exc
        except aiocoap.error.Error as exc:
            raise UplinkError(f"{method} {uri} failed: {exc}") from exc
        finally:
            self.sessions[server.netloc] = request.remote  # set by aiocoap: the DTLS session used
        self.answered.add(server.netloc)
        return answer


def credentials(config: CoapUplinkConfig) -> dict[str, object]:
    """aiocoap client credentials: the PSK for every URI on the configured server(s)."""
    dtls = {
        "dtls": {
            "psk": {"hex": config.psk.get_secret_value().encode().hex()},
            "client-identity": {"hex": config.identity.get_secret_value().encode().hex()},
        }
    }
    targets = {uri for uri in (config.uri, config.event_uri, config.command_uri, config.result_uri, config.state_uri) if uri}
    return {f"coaps://{urlsplit(uri).netloc}/*": dtls for uri in targets}


class _Hello(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        # A DTLS record: handshake (a HelloVerifyRequest or ServerHello) or alert, version 1.x.
        if len(data) >= 13 and data[0] in (21, 22) and data[1] == 0xFE and not self.answered.done():
            self.answered.set_result(True)

    def error_received(self, exc: Exception) -> None:
        if not self.answered.done():
            self.answered.set_result(False)  # nothing listens there (ICMP port unreachable)


def client_hello() -> bytes:
    """A DTLS 1.2 ClientHello offering the PSK suites (RFC 6347, RFC 6655): any DTLS server
    answers it, with a HelloVerifyRequest, a ServerHello or an alert."""
    suites = (0xC0A8, 0xC0A4, 0x00AE, 0x008C)  # PSK with AES-128 CCM-8, CCM, CBC-SHA256, CBC-SHA
    body = (b"\xfe\xfd" + os.urandom(32) + b"\x00" + b"\x00"  # version, random, no session id, no cookie
            + (2 * len(suites)).to_bytes(2, "big") + b"".join(s.to_bytes(2, "big") for s in suites)
            + b"\x01\x00")  # one compression method: none  # fmt: skip
    length = len(body).to_bytes(3, "big")
    handshake = b"\x01" + length + b"\x00\x00" + b"\x00\x00\x00" + length + body  # ClientHello, seq 0, whole
    return b"\x16\xfe\xff" + bytes(8) + len(handshake).to_bytes(2, "big") + handshake  # epoch 0, sequence 0


async def speaks_dtls(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a DTLS server answers a ClientHello at ``host``:``port`` within ``timeout``."""
    loop = asyncio.get_running_loop()
    try:
        transport, hello = await loop.create_datagram_endpoint(_Hello, remote_addr=(host, port))
    except OSError:
        return False
    try:
        transport.sendto(client_hello())
        async with asyncio.timeout(timeout):
            return await hello.answered
    except TimeoutError:
        return False
    finally:
        transport.close()
