"""The local HTTP status API (aiohttp).

- ``GET /health``: 200 ``{"status": "ok"}`` when healthy, 503 with the reasons otherwise
- ``GET /api/status``: version, uptime, gateway id, each adapter's state
- ``GET /api/devices``: every device with its points' last values
- ``GET /api/devices/{id}``: one device; 404 with a JSON error when unknown
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edged import __version__
from edged.model import Device

if TYPE_CHECKING:
    from edged.daemon import Daemon

log = logging.getLogger(__name__)


def isotime(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def device_json(daemon: Daemon, device: Device) -> dict[str, Any]:
    points = {}
    for key, point in device.points.items():
        reading = daemon.hub.value(device.id, key)
        points[key] = {
            "value": None if reading is None else reading.value,
            "unit": point.unit,
            "type": point.type.value,
            "writable": point.writable,
            "ts": None if reading is None else isotime(reading.ts),
            "quality": None if reading is None else reading.quality.name.lower(),
        }
    return {
        "id": device.id,
        "name": device.name,
        "adapter": device.adapter,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "online": device.online,
        "last_seen": isotime(device.last_seen),
        "points": points,
    }


def status_json(daemon: Daemon) -> dict[str, Any]:
    return {
        "version": __version__,
        "gateway": daemon.config.gateway.id,
        "uptime": round(time.time() - daemon.started_at, 1),
        "adapters": {
            name: {"type": adapter.config.type, "state": adapter.state, "devices": len(daemon.hub.adapter_devices(name))}
            for name, adapter in daemon.adapters.items()
        },
    }


class StatusServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.config = daemon.config.status.http
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/health", self.health),
                web.get("/api/status", self.status),
                web.get("/api/devices", self.devices),
                web.get("/api/devices/{id:.+}", self.device),
            ]
        )
        self.port: int | None = None  # the bound port, once listening (useful with port 0)
        self.listening = daemon.http_listening

    async def run(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
            await site.start()
            self.port = runner.addresses[0][1]
            log.info("status API on http://%s:%d", self.config.host, self.port)
            self.listening.set()
            await asyncio.Event().wait()
        finally:
            self.listening.clear()
            await runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        problems = self.daemon.health_problems()
        if problems:
            return web.json_response({"status": "unhealthy", "reasons": problems}, status=503)
        return web.json_response({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(status_json(self.daemon))

    async def devices(self, request: web.Request) -> web.Response:
        hub = self.daemon.hub
        return web.json_response([device_json(self.daemon, d) for d in hub.devices.values()])

    async def device(self, request: web.Request) -> web.Response:
        device = self.daemon.hub.devices.get(request.match_info["id"])
        if device is None:
            return web.json_response({"error": f"unknown device {request.match_info['id']!r}"}, status=404)
        return web.json_response(device_json(self.daemon, device))
