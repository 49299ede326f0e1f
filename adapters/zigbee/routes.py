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

Groups (a group is named by its id, its name or its device id
``<adapter>/group/0x0010``; a device by its id, ``/<endpoint>`` optional):

- ``GET groups``: ``{"groups": [{"id", "name", "device", "members": [{"device", "endpoint"}]}]}``;
- ``POST groups/create`` ``{"name": ..., "id": n}`` (id optional): the new group;
- ``POST groups/delete`` ``{"group": ...}``: every member leaves it; ``{"deleted": id}``;
- ``POST groups/add`` / ``groups/remove`` ``{"group": ..., "device": ...}``: the group.

Bindings (a source device's cluster sending straight to a device or a group):

- ``GET bindings``: ``{"bindings": [{"source", "source_ep", "cluster", "target", "target_ep" | "group", "origin"}]}``;
- ``POST bind`` / ``unbind`` ``{"source": ..., "target": ..., "cluster": "on_off"}``:
  ``{"bound": ...}`` / ``{"unbound": ...}``.

A name that matches nothing is 404; a device that refuses or does not answer is 409.

The network map (see network_map.py): ``GET map`` answers the last scan,
``POST map/scan`` scans every router now (a few seconds each) and answers
the new map: ``{"adapter", "scanned_at", "weak_lqi", "weak_links", "nodes":
[...], "links": [{"source", "target", "lqi", "relationship", "weak"}],
"routes": [...]}``.

Firmware (see firmware.py): ``GET ota`` asks every device that takes
updates for its version and answers ``{"devices": [{"device", "current_version",
"available_version", "source", "progress", "last_update", ...}]}``; ``POST
ota/update`` ``{"device": id}`` starts updating it to the newest image and
answers ``{"device", "from_version", "to_version"}`` at once (the update
itself takes minutes; its progress is in ``GET ota`` and ``/metrics``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from edged.adapter import JSON, Route, RouteError
from edged.adapters.zigbee.config import BIND_CLUSTERS, PERMIT_MAX_SECONDS
from edged.errors import CommandError, EdgedError

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


def _text(body: JSON, key: str, example: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise RouteError(400, f'expected {{"{key}": "{example}"}}')
    return value


def _group_ref(body: JSON) -> str | int:
    group = body.get("group")
    if isinstance(group, bool) or not isinstance(group, str | int):
        raise RouteError(400, 'expected {"group": <id, name or device id>}')
    return group


def _refused(exc: Exception) -> RouteError:
    """An adapter's refusal as the API answers it: a name that matches nothing is 404, the rest 409."""
    text = str(exc) if isinstance(exc, CommandError) else f"{type(exc).__name__}: {exc}"
    unknown = isinstance(exc, CommandError) and (" has no group " in text or "is not a device of" in text)
    return RouteError(404 if unknown else 409, text)


async def _do(request: Awaitable[Any]) -> Any:
    try:
        return await request
    except (EdgedError, TimeoutError, OSError) as exc:
        raise _refused(exc) from exc


def _now(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except EdgedError as exc:
        raise _refused(exc) from exc


async def group_list(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return {"groups": _now(adapter.groups)}


async def group_create(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    name = _text(body, "name", "living room")
    group_id = body.get("id")
    if group_id is not None and (isinstance(group_id, bool) or not isinstance(group_id, int)):
        raise RouteError(400, "id must be a whole number from 1 to 65527")
    try:
        group = adapter.create_group(name, group_id)
    except CommandError as exc:
        raise RouteError(400 if "characters" in str(exc) or "id is" in str(exc) else 409, str(exc)) from exc
    return _described(adapter, group.group_id)


async def group_delete(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return {"deleted": await _do(adapter.delete_group(_group_ref(body)))}


async def group_add(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    group = await _do(adapter.add_to_group(_group_ref(body), _text(body, "device", "zigbee/<ieee>")))
    return _described(adapter, group.group_id)


async def group_remove(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    group = await _do(adapter.remove_from_group(_group_ref(body), _text(body, "device", "zigbee/<ieee>")))
    return _described(adapter, group.group_id)


def _described(adapter: ZigbeeAdapter, group_id: int) -> JSON:
    return next(g for g in adapter.groups() if g["id"] == group_id)


def _link_args(body: JSON) -> tuple[str, str | int, str]:
    source = _text(body, "source", "zigbee/<ieee>")
    target = body.get("target")
    if isinstance(target, bool) or not isinstance(target, str | int):
        raise RouteError(400, 'expected {"target": <device id, group name or group id>}')
    cluster = body.get("cluster", "on_off")
    if cluster not in BIND_CLUSTERS:
        raise RouteError(400, f"expected a cluster among {', '.join(BIND_CLUSTERS)}; got {cluster!r}")
    return source, target, cluster


async def binding_list(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return {"bindings": adapter.bindings()}


async def bind(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    link = _now(adapter.link, *_link_args(body))
    await _do(adapter.bind(link))
    return {"bound": link.as_json()}


async def unbind(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    link = _now(adapter.link, *_link_args(body))
    await _do(adapter.unbind(link))
    return {"unbound": link.as_json()}


async def network_map(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return _now(adapter.network_map)


async def scan(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return await _do(adapter.scan_topology())


async def ota_status(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return {"devices": await _do(adapter.firmware.status())}


async def ota_update(adapter: ZigbeeAdapter, body: JSON) -> JSON:
    return await _do(adapter.firmware.start(_device(body)))


ROUTES = [
    Route("POST", "permit", permit, alias="/api/zigbee/permit", handle_all=permit_all),
    Route("POST", "remove", remove, alias="/api/zigbee/remove", handle_all=remove_any),
    Route("GET", "groups", group_list),
    Route("POST", "groups/create", group_create),
    Route("POST", "groups/delete", group_delete),
    Route("POST", "groups/add", group_add),
    Route("POST", "groups/remove", group_remove),
    Route("GET", "bindings", binding_list),
    Route("POST", "bind", bind),
    Route("POST", "unbind", unbind),
    Route("GET", "map", network_map),
    Route("POST", "map/scan", scan),
    Route("GET", "ota", ota_status),
    Route("POST", "ota/update", ota_update),
]
