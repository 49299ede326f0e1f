"""The status documents, shared by the HTTP and CoAP servers.

Each function turns the gateway's live state (a ``GatewayView``) into plain
JSON-able data; the servers only choose the encoding (JSON or CBOR) and the
transport.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edged import __version__
from edged.model import Device, Problem
from edged.part import plain
from edged.view import GatewayView

if TYPE_CHECKING:
    from edged.uplink.service import UplinkService

RECENT_FIRINGS = 20  # rule firings shown by /api/status


def isotime(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def health_json(view: GatewayView) -> tuple[bool, dict[str, Any]]:
    """``(healthy, document)``: ``{"status": "ok"}`` or the reasons it is not."""
    problems = view.health_problems()
    if problems:
        return False, {"status": "unhealthy", "reasons": problems}
    return True, {"status": "ok"}


def device_json(view: GatewayView, device: Device) -> dict[str, Any]:
    points = {}
    for key, point in device.points.items():
        reading = view.hub.value(device.id, key)
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
        "problem": problem_json(device.problem),
        "points": points,
    }


def problem_json(problem: Problem | None) -> dict[str, Any] | None:
    """What went wrong last: its reason, since when the failures run, the latest, how many; None while all is well."""
    if problem is None:
        return None
    return {"reason": problem.reason, "since": isotime(problem.since), "last": isotime(problem.last), "count": problem.count}


def devices_json(view: GatewayView) -> list[dict[str, Any]]:
    return [device_json(view, device) for device in list(view.hub.devices.values())]


def status_json(view: GatewayView) -> dict[str, Any]:
    """Version, uptime, adapters, and (when configured) outbox, uplinks (``uplink`` too when there is one) and rules."""
    _, health = health_json(view)
    document: dict[str, Any] = {
        "version": __version__,
        "gateway": view.gateway_id,
        **plain(view.stats()),
        "clock_synced": view.clock_synced,
        "config": view.config,
        "health": health,
        "adapters": {name: _adapter(view, name) for name in list(view.adapters)},
    }
    if view.uplink is not None:
        uplinks = {name: _uplink(service) for name, service in view.uplink.services.items()}
        if len(uplinks) == 1:  # the one uplink, as before there could be several
            only = next(iter(uplinks.values()))
            document["uplink"] = {key: value for key, value in only.items() if key not in ("type", "profile")}
        document["uplinks"] = uplinks
        document["outbox"] = _scalars(plain(view.uplink.outbox.stats()))
    if view.rules is not None:
        stats = view.rules.stats()
        document["rules"] = {
            "firings": stats.firings,
            "errors": stats.errors,
            "paused": stats.paused,
            "recent": [_firing(firing) for firing in reversed(stats.recent[-RECENT_FIRINGS:])],
        }
    return document


def _adapter(view: GatewayView, name: str) -> dict[str, Any]:
    adapter = view.adapters[name]
    devices = view.hub.adapter_devices(name)
    return {
        "type": adapter.config.type,
        "state": adapter.state.value,
        "devices": len(devices),
        "online": sum(1 for d in devices if d.online),
        **_scalars(plain(adapter.stats())),
        "problem": problem_json(adapter.last_problem),
        "problems": adapter.health_problems(),
    }


def _uplink(service: UplinkService) -> dict[str, Any]:
    figures = _scalars(plain(service.stats()))
    return {
        "type": service.config.type, "profile": service.config.profile, **figures, "connected": bool(figures["connected"]),
        "problem": problem_json(service.last_problem),
    }


def _scalars(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in stats.items() if value is None or isinstance(value, (bool, int, float, str))}


def _firing(firing: dict[str, Any]) -> dict[str, Any]:
    out = {key: value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
           for key, value in firing.items()}  # fmt: skip
    if isinstance(out.get("ts"), (int, float)):
        out["time"] = isotime(float(out["ts"]))
    return out
