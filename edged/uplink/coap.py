"""CoAP uplink (aiocoap over DTLS with a pre-shared key).

Every outbox row is one confirmable POST to ``uri``: readings as a SenML
pack in CBOR (see ``senml``), events as a CBOR map to ``event_uri``. A row is
acknowledged by a 2.xx response; anything else, or no answer within
``timeout``, fails the connection and the rows are sent again after a
reconnect. Cloud commands are not taken over CoAP (use MQTT for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiocoap
import aiocoap.error
import cbor2

from edged.errors import UplinkError
from edged.outbox import EVENT, Row
from edged.uplink import senml
from edged.uplink.config import CoapUplinkConfig

log = logging.getLogger(__name__)

CBOR = 60  # application/cbor


class CoapLink:
    def __init__(self, config: CoapUplinkConfig, gateway_id: str, context: aiocoap.Context) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.context = context
        # aiocoap pools DTLS sessions weakly: hold each server's session so
        # it is reused between POSTs and closed in order by context.shutdown().
        self.sessions: dict[str, object] = {}

    async def send(self, row: Row) -> None:
        if row.kind == EVENT:
            event = {"type": row.subject, "seq": row.id, **json.loads(row.payload)}
            uri, payload, fmt = self.config.event_uri or self.config.uri, cbor2.dumps(event), CBOR
        else:
            uri = self.config.uri
            payload = senml.encode_row(self.gateway_id, row.subject, row.id, row.payload)
            fmt = senml.CONTENT_FORMAT
        request = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=payload, content_format=fmt)
        try:
            async with asyncio.timeout(self.config.timeout):
                response = await self.context.request(request).response
        except TimeoutError as exc:
            raise UplinkError(f"no answer from {uri} within {self.config.timeout:g} s") from exc
        except aiocoap.error.Error as exc:
            raise UplinkError(f"POST {uri} failed: {exc}") from exc
        finally:
            self.sessions[urlsplit(uri).netloc] = request.remote  # set by aiocoap: the DTLS session used
        if not response.code.is_successful():
            raise UplinkError(f"POST {uri} answered {response.code}")


def credentials(config: CoapUplinkConfig) -> dict[str, object]:
    """aiocoap client credentials: the PSK for every URI on the configured server(s)."""
    dtls = {
        "dtls": {
            "psk": {"hex": config.psk.get_secret_value().encode().hex()},
            "client-identity": {"hex": config.identity.get_secret_value().encode().hex()},
        }
    }
    targets = {config.uri} | ({config.event_uri} if config.event_uri else set())
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
