"""The status resources over CoAP (aiocoap), for constrained clients.

The same documents as the HTTP API (edged/status/views.py), read-only:

- ``/health`` (observable): ``{"status": "ok"}`` or ``{"status": "unhealthy", "reasons": [...]}``,
  always 2.05 so that an observation survives the gateway becoming unhealthy
- ``/api/status``
- ``/api/devices`` (observable): every device
- ``/api/devices/{id}`` (observable): one device; 4.04 when unknown
- ``/.well-known/core``: the resources above, one link per device

Each answers in JSON (content format 50, the default) or CBOR (60) as the
Accept option asks; any other Accept is 4.06. Observers are notified at
most every ``NOTIFY_INTERVAL`` seconds, only when what they watch changed.
There is no authentication: the server listens on loopback (the default)
unless ``allow_unauthenticated: true`` says another address is on a trusted
network; the configuration and this server refuse it otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiocoap
import cbor2
from aiocoap import error, resource
from aiocoap.numbers.contentformat import ContentFormat
from aiocoap.util.linkformat import Link, LinkFormat

from edged.config import CoapStatusConfig, is_loopback
from edged.model import DeviceAdded, DeviceRemoved, DeviceStatus, Event, Reading
from edged.status.views import device_json, devices_json, health_json, status_json
from edged.view import GatewayView

log = logging.getLogger(__name__)

NOTIFY_INTERVAL = 0.5  # seconds; the most often an observer hears of a change
FORMATS = f"{ContentFormat.JSON.value} {ContentFormat.CBOR.value}"


def encode(request: aiocoap.Message, document: Any) -> aiocoap.Message:
    """``document`` as the request's Accept option asks: JSON (default) or CBOR."""
    accept = request.opt.accept
    if accept is None or accept == ContentFormat.JSON:
        payload = json.dumps(document, separators=(",", ":")).encode()
        return aiocoap.Message(payload=payload, content_format=ContentFormat.JSON)
    if accept == ContentFormat.CBOR:
        return aiocoap.Message(payload=cbor2.dumps(document), content_format=ContentFormat.CBOR)
    raise error.NotAcceptable()


class Document(resource.Resource):
    """A read-only resource rendering ``view()``."""

    ct = FORMATS

    def __init__(self, view: Callable[[], Any], rt: str) -> None:
        super().__init__()
        self.view = view
        self.rt = rt

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return encode(request, self.view())


class ObservableDocument(Document, resource.ObservableResource):
    """Like ``Document``, and observers are told when ``changed()`` is called."""

    def changed(self) -> None:
        self.updated_state()


class DeviceResource(resource.ObservableResource, resource.PathCapable):
    """``/api/devices/{id}``: the rest of the path is the device id (ids contain ``/``)."""

    def __init__(self, gateway: GatewayView) -> None:
        super().__init__()
        self.gateway = gateway
        self._watchers: dict[str, set[Any]] = {}

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        device_id = "/".join(request.opt.uri_path)
        if not device_id:
            return encode(request, devices_json(self.gateway))
        device = self.gateway.hub.devices.get(device_id)
        if device is None:
            raise error.NotFound(f"unknown device {device_id!r}")
        return encode(request, device_json(self.gateway, device))

    async def add_observation(self, request: aiocoap.Message, serverobservation: Any) -> None:
        device_id = "/".join(request.opt.uri_path)
        watchers = self._watchers.setdefault(device_id, set())
        watchers.add(serverobservation)

        def cancel() -> None:
            watchers.discard(serverobservation)
            if not watchers:
                self._watchers.pop(device_id, None)

        serverobservation.accept(cancel)

    def changed(self, device_ids: set[str]) -> None:
        for device_id in device_ids & self._watchers.keys():
            for observation in list(self._watchers[device_id]):
                observation.trigger()

    def get_resources_as_linkheader(self) -> LinkFormat:
        return LinkFormat(
            [Link(f"/{device_id}", rt="edged.device", ct=FORMATS, obs=None) for device_id in list(self.gateway.hub.devices)]
        )


class CoapStatusServer:
    """Serves the status resources on ``status.coap`` until cancelled."""

    def __init__(self, gateway: GatewayView, config: CoapStatusConfig) -> None:
        self.gateway = gateway
        self.config = config
        if not self.config.allow_unauthenticated and not is_loopback(self.config.host):
            raise ValueError(
                f"refusing to serve the unauthenticated CoAP status on {self.config.host} without allow_unauthenticated"
            )
        self.health = ObservableDocument(lambda: health_json(gateway)[1], "edged.health")
        self.devices = ObservableDocument(lambda: devices_json(gateway), "edged.devices")
        self.device = DeviceResource(gateway)
        self.site = resource.Site()
        self.site.add_resource([".well-known", "core"], resource.WKCResource(self.site.get_resources_as_linkheader))
        self.site.add_resource(["health"], self.health)
        self.site.add_resource(["api", "status"], Document(lambda: status_json(gateway), "edged.status"))
        self.site.add_resource(["api", "devices"], self.devices)
        self.site.add_resource(["api", "devices"], self.device)
        self._dirty: set[str] = set()
        self.listening = asyncio.Event()

    async def run(self) -> None:
        hub = self.gateway.hub
        bind = (self.config.host, self.config.port)
        context = await aiocoap.Context.create_server_context(self.site, bind=bind, transports=["udp6"])
        unsubscribe = hub.subscribe(self._on_readings)
        unsubscribe_events = hub.subscribe_events(self._on_event)
        try:
            log.info("status API on coap://%s:%d", *bind)
            self.listening.set()
            await self._notify_forever()
        finally:
            self.listening.clear()
            unsubscribe()
            unsubscribe_events()
            with contextlib.suppress(Exception):
                await context.shutdown()

    def _on_readings(self, readings: Sequence[Reading]) -> None:
        last = None
        for reading in readings:
            if reading.device_id is not last:
                last = reading.device_id
                self._dirty.add(last)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, DeviceStatus | DeviceRemoved):
            self._dirty.add(event.device_id)
        elif isinstance(event, DeviceAdded):
            self._dirty.add(event.device.id)

    async def _notify_forever(self) -> None:
        last_health = health_json(self.gateway)[1]
        while True:
            await asyncio.sleep(NOTIFY_INTERVAL)
            health = health_json(self.gateway)[1]
            if health != last_health:
                last_health = health
                self.health.changed()
            if self._dirty:
                dirty, self._dirty = self._dirty, set()
                self.devices.changed()
                self.device.changed(dirty)
