"""The Zigbee operations of the status API, under ``/api/adapters/{instance}/``.

- ``POST permit`` ``{"seconds": n}`` (0..254, the configured default when
  left out; 0 closes the network): let new devices join. Answers
  ``{"adapter": name, "seconds": n}``.
- ``POST remove`` ``{"device": id}``: ask the device to leave the network and
  forget it. Answers ``{"removed": id}``; 404 when this adapter has no such
  device.

``POST /api/zigbee/permit`` and ``/api/zigbee/remove`` do the same for every
running Zigbee adapter at once (permit answers ``{"adapters": [...],
"seconds": n}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edged.adapter import JSON, Route, RouteError
from edged.adapters.zigbee.config import PERMIT_MAX_SECONDS
from edged.errors import EdgedError

if TYPE_CHECKING:
    from edged.adapters.zigbee.adapter import ZigbeeAdapter


def _seconds(body: JSON) -> int | None:
    seconds = body.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= PERMIT_MAX_SECONDS):
        raise RouteError(400, f"seconds must be a whole number from 0 to {PERMIT_MAX_SECONDS}")
    return seconds


def _device(body: JSON) -> str:
    device = body.get("device")
    if not isinstance(device, str):
        raise RouteError(400, 'expected {"device": "<device id>"}')
    return device


async def _permit_on(adapter: ZigbeeAdapter, seconds: int | None) -> int:
    try:
        return await adapter.permit_join(seconds)
    except (EdgedError, TimeoutError, OSError) as exc:
        raise RouteError(502, f"permit join on {adapter.name} failed: {type(exc).__name__}: {exc}") from exc


async def permit(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return {"adapter": adapter.name, "seconds": await _permit_on(adapter, _seconds(body))}


async def permit_all(adapters: list[ZigbeeAdapter], body: JSON) -> JSON:
    seconds = _seconds(body)
    granted = [await _permit_on(adapter, seconds) for adapter in adapters]
    return {"adapters": sorted(adapter.name for adapter in adapters), "seconds": granted[0]}


async def remove(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    device = _device(body)
    known = adapter.hub.devices.get(device)
    if known is None or known.adapter != adapter.name:
        raise RouteError(404, f"{adapter.name} has no device {device!r}")
    try:
        await adapter.remove(device)
    except (EdgedError, TimeoutError, OSError) as exc:
        raise RouteError(409, f"{type(exc).__name__}: {exc}") from exc
    return {"removed": device}


async def remove_any(adapters: list[ZigbeeAdapter], body: JSON) -> JSON:
    device = _device(body)
    known = adapters[0].hub.devices.get(device)
    if known is None:
        raise RouteError(404, f"unknown device {device!r}")
    owner = next((adapter for adapter in adapters if adapter.name == known.adapter), None)
    if owner is None:
        raise RouteError(409, f"{device} is not a Zigbee device")
    return await remove(owner, body)


ROUTES = [
    Route("POST", "permit", permit, alias="/api/zigbee/permit", handle_all=permit_all),
    Route("POST", "remove", remove, alias="/api/zigbee/remove", handle_all=remove_any),
]
