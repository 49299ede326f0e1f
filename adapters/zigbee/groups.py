"""Zigbee groups: several devices that take one multicast command together.

zigpy keeps the groups and their members in its database (``zigbee.db``);
a device is put in a group with the Groups cluster's Add Group command, so
it answers the group's address from then on, with or without the gateway.
In the Hub a group is a writable device, ``<adapter>/group/0x<id>``, with
the points ``on``, ``toggle``, ``level`` and ``color_temp``: a write is one
multicast frame to every member, not one command per device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zigpy.zcl import foundation
from zigpy.zcl.clusters.general import Groups

from edged.adapters.zigbee import codec
from edged.errors import CommandError
from edged.model import Device, Point

if TYPE_CHECKING:
    from zigpy.application import ControllerApplication
    from zigpy.endpoint import Endpoint
    from zigpy.group import Group

PREFIX = "group/"
MODEL = "Zigbee group"
# The points a group offers: the commands every lamp or plug group takes.
POINTS: dict[str, Point] = {
    "on": Point("on", codec.BOOL, None, True),
    "toggle": Point("toggle", codec.BOOL, None, True),
    "level": Point("level", codec.INT, "%", True),
    "color_temp": Point("color_temp", codec.INT, "mired", True),
}


def native_id(group_id: int) -> str:
    """The group's part of its device id: ``group/0x0010``."""
    return f"{PREFIX}0x{group_id:04X}"


def group_id_of(native: str) -> int | None:
    """The group id in a native id (``group/0x0010``), or None when it names no group."""
    if not native.startswith(PREFIX):
        return None
    try:
        return int(native.removeprefix(PREFIX), 0)
    except ValueError:
        return None


def device(adapter: str, group: Group, *, online: bool) -> Device:
    """The group as a Hub device."""
    return Device(f"{adapter}/{native_id(group.group_id)}", adapter, group.name, None, MODEL, dict(POINTS), online=online)


def find(app: ControllerApplication, adapter: str, ref: str | int) -> Group | None:
    """The group a user names: its id (16, "0x0010"), its name, or its device id."""
    if isinstance(ref, int):
        return app.groups.get(ref)
    native = ref.removeprefix(f"{adapter}/")
    group_id = group_id_of(native)
    if group_id is None:
        try:
            group_id = int(native, 0)
        except ValueError:
            return next((g for g in app.groups.values() if g.name == ref), None)
    return app.groups.get(group_id)


def free_id(app: ControllerApplication) -> int:
    """The lowest group id no group uses."""
    group_id = 1
    while group_id in app.groups:
        group_id += 1
    return group_id


def members(group: Group) -> list[tuple[str, int]]:
    """(IEEE address, endpoint) of every member."""
    return sorted((str(ieee), endpoint_id) for ieee, endpoint_id in group.members)


def describe(group: Group, adapter: str) -> dict[str, Any]:
    """The group as the status API shows it."""
    return {
        "id": group.group_id,
        "name": group.name,
        "device": f"{adapter}/{native_id(group.group_id)}",
        "members": [{"device": f"{adapter}/{ieee}", "endpoint": ep} for ieee, ep in members(group)],
    }


async def add(endpoint: Endpoint, group_id: int, name: str) -> None:
    """Put the endpoint in the group (Add Group); raise ``CommandError`` if the device refuses."""
    status = await endpoint.add_to_group(group_id, name)
    if status not in (foundation.Status.SUCCESS, foundation.Status.DUPLICATE_EXISTS):
        raise CommandError(f"the device refused to join group 0x{group_id:04X}: {foundation.Status(status).name}")


async def remove(endpoint: Endpoint, group_id: int) -> None:
    """Take the endpoint out of the group (Remove Group); raise ``CommandError`` if the device refuses."""
    status = await endpoint.remove_from_group(group_id)
    if status not in (foundation.Status.SUCCESS, foundation.Status.NOT_FOUND):
        raise CommandError(f"the device refused to leave group 0x{group_id:04X}: {foundation.Status(status).name}")


def member_endpoint(zigpy_device: Any, endpoint_id: int | None) -> Endpoint:
    """The device's endpoint that can be a group member (it has a Groups server cluster)."""
    for endpoint in zigpy_device.non_zdo_endpoints:
        if endpoint_id is not None and endpoint.endpoint_id != endpoint_id:
            continue
        if Groups.cluster_id in endpoint.in_clusters:
            return endpoint
    where = f"endpoint {endpoint_id}" if endpoint_id is not None else "any endpoint"
    raise CommandError(f"{zigpy_device.ieee} has no Groups cluster on {where}: it cannot join a group")
