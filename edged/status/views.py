"""The status documents, shared by the HTTP and CoAP servers.

Each function turns the daemon's live state into plain JSON-able data; the
servers only choose the encoding (JSON or CBOR) and the transport.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edged import __version__
from edged.model import Device

if TYPE_CHECKING:
    from edged.daemon import Daemon

RECENT_FIRINGS = 20  # rule firings shown by /api/status


def isotime(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def health_json(daemon: Daemon) -> tuple[bool, dict[str, Any]]:
    """``(healthy, document)``: ``{"status": "ok"}`` or the reasons it is not."""
    problems = daemon.health_problems()
    if problems:
        return False, {"status": "unhealthy", "reasons": problems}
    return True, {"status": "ok"}


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


def devices_json(daemon: Daemon) -> list[dict[str, Any]]:
    return [device_json(daemon, device) for device in list(daemon.hub.devices.values())]


def status_json(daemon: Daemon) -> dict[str, Any]:
    """Version, uptime, adapters, and (when configured) outbox, uplink and rules."""
    _, health = health_json(daemon)
    document: dict[str, Any] = {
        "version": __version__,
        "gateway": daemon.config.gateway.id,
        "uptime": round(time.monotonic() - daemon.started_at, 1),
        "health": health,
        "loop_lag": round(float(getattr(daemon, "loop_lag", 0.0)), 4),
        "clock_synced": daemon.clock_synced,
        "readings_in": daemon.hub.readings_in,
        "adapters": {
            name: {
                "type": adapter.config.type,
                "state": adapter.state,
                "devices": len(daemon.hub.adapter_devices(name)),
                "online": sum(1 for d in daemon.hub.adapter_devices(name) if d.online),
                "readings": getattr(adapter, "readings_total", 0),
                "errors": getattr(adapter, "errors_total", 0),
                "reconnects": getattr(adapter, "reconnects_total", 0),
            }
            for name, adapter in list(daemon.adapters.items())
        },
    }
    uplink = getattr(daemon, "uplink", None)
    if uplink is not None:
        stats = {key.removeprefix("uplink_"): value for key, value in _stats(uplink).items()
                 if not key.startswith("outbox_")}
        document["uplink"] = _plain(stats, ("connected", "acked", "reconnects"), uplink)
        outbox = getattr(uplink, "outbox", None)
        if outbox is not None:
            stats = {key.removeprefix("outbox_"): value for key, value in _stats(outbox).items()}
            document["outbox"] = _plain(stats, (), outbox)
    rules = getattr(daemon, "rules", None)
    if rules is not None:
        recent = list(getattr(rules, "recent", ()))[-RECENT_FIRINGS:]
        document["rules"] = {
            "firings": getattr(rules, "firings_total", None),
            "errors": getattr(rules, "errors_total", None),
            "recent": [_firing(firing) for firing in reversed(recent)],
        }
    return document


def _stats(part: object) -> dict[str, Any]:
    stats = getattr(part, "stats", None)
    result = stats() if callable(stats) else None
    return dict(result) if isinstance(result, dict) else {}


def _plain(stats: dict[str, Any], attributes: tuple[str, ...], part: object) -> dict[str, Any]:
    for attribute in attributes:
        value = getattr(part, attribute, None)
        if attribute not in stats and isinstance(value, (bool, int, float, str)):
            stats[attribute] = value
    return {key: value for key, value in stats.items() if value is None or isinstance(value, (bool, int, float, str))}


def _firing(firing: object) -> dict[str, Any]:
    if not isinstance(firing, dict):
        return {"firing": str(firing)}
    out = {key: value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
           for key, value in firing.items()}
    if isinstance(out.get("ts"), (int, float)):
        out["time"] = isotime(float(out["ts"]))
    return out
