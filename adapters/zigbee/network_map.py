"""The network map: who hears whom, and how well.

zigpy's topology scanner asks the coordinator and every router for its
neighbour table (Mgmt_Lqi_req: each neighbour with its relationship and the
link quality, LQI 0..255, it is heard with) and its routing table
(Mgmt_Rtg_req). ``build`` turns what zigpy holds from the last scan into the
JSON the status API serves: the nodes, the links as each router hears them,
with those under the weak threshold flagged, and the active routes. End
devices keep no tables; they appear as children of the router they joined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zigpy.zdo.types as zdo_t

if TYPE_CHECKING:
    from zigpy.application import ControllerApplication
    from zigpy.device import Device as ZigpyDevice

    from edged.hub import Hub

ROLES = {0: "coordinator", 1: "router", 2: "end_device"}


def role(device: ZigpyDevice) -> str:
    node = device.node_desc
    return "unknown" if node is None else ROLES.get(int(node.logical_type), "unknown")


def build(app: ControllerApplication, adapter: str, hub: Hub, weak_lqi: int, scanned_at: float | None) -> dict[str, Any]:
    """The map as the status API serves it (``GET /api/adapters/<name>/map``)."""
    coordinator = app.state.node_info.ieee
    nodes = [_node(device, adapter, hub, device.ieee == coordinator) for device in app.devices.values()]
    by_nwk = {int(device.nwk): str(device.ieee) for device in app.devices.values()}
    links = [
        {
            "source": str(ieee),
            "target": str(neighbor.ieee),
            "lqi": int(neighbor.lqi),
            "relationship": neighbor.relationship.name.lower(),
            "weak": int(neighbor.lqi) < weak_lqi,
        }
        for ieee, table in app.topology.neighbors.items()
        for neighbor in table
    ]
    routes = [
        {"source": str(ieee), "destination": by_nwk.get(int(route.DstNWK), f"0x{route.DstNWK:04X}"),
         "next_hop": by_nwk.get(int(route.NextHop), f"0x{route.NextHop:04X}")}
        for ieee, table in app.topology.routes.items()
        for route in table
        if route.RouteStatus == zdo_t.RouteStatus.Active
    ]
    return {
        "adapter": adapter,
        "scanned_at": scanned_at,
        "weak_lqi": weak_lqi,
        "weak_links": sum(link["weak"] for link in links),
        "nodes": sorted(nodes, key=lambda n: (n["role"] != "coordinator", n["ieee"])),
        "links": links,
        "routes": routes,
    }


def _node(device: ZigpyDevice, adapter: str, hub: Hub, is_coordinator: bool) -> dict[str, Any]:
    device_id = None if is_coordinator else f"{adapter}/{device.ieee}"
    known = hub.devices.get(device_id) if device_id else None
    return {
        "ieee": str(device.ieee),
        "nwk": f"0x{device.nwk:04X}",
        "device": device_id,
        "name": known.name if known else None,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "role": "coordinator" if is_coordinator else role(device),
        "online": True if is_coordinator else bool(known and known.online),
        "lqi": device.lqi,  # of the last frame the coordinator heard from it
        "last_seen": device.last_seen,
    }
