"""CoAP uplink (aiocoap over DTLS with a pre-shared key).

Every outbox row is one confirmable POST: readings as a SenML pack in CBOR
(see ``senml``) to ``uri``, events as a CBOR map to ``event_uri`` and
command results to ``result_uri``. A row is acknowledged by a 2.xx
response. A 4.xx is a refusal (``Refused``): for good, except 4.01
Unauthorized, 4.03 Forbidden and 4.29 Too Many Requests, which may pass; a
5.xx, or no answer within ``timeout``, fails the connection and the rows are
sent again after a reconnect.

Cloud commands: with ``command_uri`` the gateway observes that resource
(RFC 7641); its representation, and every notification, is one command:
a CBOR map or a JSON object. A resource that
stays silent past its Max-Age is registered again, and a server that does
not offer Observe, or answers with an error, is read again after Max-Age
(readings keep flowing meanwhile). As the current
representation comes again after every registration, the uplink service
recognises a command it already took and does not execute it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiocoap
import aiocoap.error
import cbor2

from edged.errors import Refused, UplinkError
from edged.outbox import EVENT, Row
from edged.uplink import senml
from edged.uplink.commands import Parsed, parse_command
from edged.uplink.config import CoapUplinkConfig

log = logging.getLogger(__name__)

CBOR = 60  # application/cbor
Take = Callable[[bytes, Parsed], Awaitable[None]]  # a command message and what parse_command made of it
DEFAULT_MAX_AGE = 60.0  # seconds a representation stays fresh without a Max-Age option (RFC 7252)
MIN_MAX_AGE = 5.0  # never register or poll again more often than this
PASSING = {aiocoap.UNAUTHORIZED, aiocoap.FORBIDDEN, aiocoap.numbers.codes.Code.TOO_MANY_REQUESTS}  # 4.xx that may pass


class CoapLink:
    def __init__(self, config: CoapUplinkConfig, gateway_id: str, context: aiocoap.Context) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.context = context
        # aiocoap pools DTLS sessions weakly: hold each server's session so
        # it is reused between POSTs and closed in order by context.shutdown().
        self.sessions: dict[str, object] = {}

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
        response = await self._answer(request, self.context.request(request).response)
        if response.code.class_ == 4:
            raise Refused(f"POST {uri}", str(response.code), permanent=response.code not in PASSING)
        if not response.code.is_successful():
            raise UplinkError(f"POST {uri} answered {response.code}")

    async def commands(self, take: Take) -> None:
        """Observe ``command_uri``; hand every representation to ``take(payload, parsed)``.

        Runs until the connection fails (then raises UplinkError)."""
        while True:
            request = aiocoap.Message(code=aiocoap.GET, uri=self.config.command_uri, observe=0)
            exchange = self.context.request(request)
            try:
                await self._observe(request, exchange, take)
            finally:
                if not exchange.observation.cancelled:
                    exchange.observation.cancel()

    async def _observe(self, request: aiocoap.Message, exchange: Any, take: Take) -> None:
        """Take the representation and its notifications until the resource falls silent past its Max-Age."""
        response = await self._answer(request, exchange.response)
        notifications = aiter(exchange.observation)
        while True:
            await self._take(response, take)
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

    async def _take(self, response: aiocoap.Message, take: Take) -> None:
        if not response.code.is_successful():
            if response.code != aiocoap.NOT_FOUND:  # 4.04: no command yet
                # Readings keep flowing; the resource is read again after Max-Age.
                log.warning("GET %s answered %s; commands are not taken until it answers 2.05",
                            self.config.command_uri, response.code)  # fmt: skip
            return
        payload = response.payload
        if not payload:
            return  # no command yet
        # Told apart by the first byte rather than the content-format (servers get that wrong):
        # a CBOR map starts with 0xa0-0xbf, which JSON text never does.
        await take(payload, parse_command(payload, "cbor" if 0xA0 <= payload[0] <= 0xBF else "json"))

    async def _answer(self, request: aiocoap.Message, response: asyncio.Future[aiocoap.Message]) -> aiocoap.Message:
        """The response to ``request``, or UplinkError when it fails or does not come within ``timeout``."""
        uri, method = request.get_request_uri(), request.code
        try:
            async with asyncio.timeout(self.config.timeout):
                return await response
        except TimeoutError as exc:
            raise UplinkError(f"no answer from {uri} within {self.config.timeout:g} s") from exc
        except aiocoap.error.Error as exc:
            raise UplinkError(f"{method} {uri} failed: {exc}") from exc
        finally:
            self.sessions[urlsplit(uri).netloc] = request.remote  # set by aiocoap: the DTLS session used


def credentials(config: CoapUplinkConfig) -> dict[str, object]:
    """aiocoap client credentials: the PSK for every URI on the configured server(s)."""
    dtls = {
        "dtls": {
            "psk": {"hex": config.psk.get_secret_value().encode().hex()},
            "client-identity": {"hex": config.identity.get_secret_value().encode().hex()},
        }
    }
    targets = {uri for uri in (config.uri, config.event_uri, config.command_uri, config.result_uri) if uri}
    return {f"coaps://{urlsplit(uri).netloc}/*": dtls for uri in targets}


@contextlib.asynccontextmanager
async def connect(config: CoapUplinkConfig, gateway_id: str) -> AsyncIterator[CoapLink]:
    """A client context holding the DTLS session(s); always shut down."""
    try:
        context = await aiocoap.Context.create_client_context()
    except OSError as exc:
        raise UplinkError(f"cannot open a CoAP client: {exc}") from exc
    try:
        context.client_credentials.load_from_dict(credentials(config))
        log.info("sending to %s", config.uri)
        yield CoapLink(config, gateway_id, context)
    finally:
        await context.shutdown()
