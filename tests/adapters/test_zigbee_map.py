"""The network map through the simulated radio: zigpy's topology scanner asks
the coordinator and each router for its neighbour and routing tables
(Mgmt_Lqi_req, Mgmt_Rtg_req); the map flags links under the weak LQI."""

from __future__ import annotations

import asyncio

import pytest
import zigpy.topology

from edged.adapter import RouteError
from edged.adapters.zigbee import routes
from edged.adapters.zigbee.adapter import ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.model import Quality

COORDINATOR = "00:12:4b:00:ed:9e:d0:01"
LAMP, PLUG, CLIMATE = "00:0d:6f:00:0e:d9:ed:01", "00:0d:6f:00:0e:d9:ed:02", "00:0d:6f:00:0e:d9:ed:03"


@pytest.fixture(autouse=True)
def no_scan_pacing(monkeypatch):
    """zigpy waits 1..1.5 s between table requests to spare a real network; the simulated one needs no pause."""
    monkeypatch.setattr(zigpy.topology, "REQUEST_DELAY", (0, 0))


def make(hub, tmp_path) -> ZigbeeAdapter:
    config = {
        "type": "zigbee", "name": "zb", "radio": "simulated", "topology": {"weak_lqi": 60},
        "simulated": {"devices": [{"kind": "lamp", "ieee": LAMP, "lqi": 35}, {"kind": "plug", "ieee": PLUG, "lqi": 210},
                                  {"kind": "climate", "ieee": CLIMATE, "lqi": 120}], "report_interval": 0},
    }
    return ZigbeeAdapter(ZigbeeConfig.model_validate(config), hub, tmp_path / "zb")


async def pair(adapter: ZigbeeAdapter, hub, watch) -> None:
    async with asyncio.timeout(10):
        await adapter.ready.wait()
    await adapter.permit_join(30)
    last = {LAMP: "color_temp", PLUG: "demand", CLIMATE: "pressure"}
    await watch.until(lambda: all((r := hub.value(f"zb/{i}", k)) is not None and r.quality is Quality.GOOD for i, k in last.items()))


async def test_the_map_shows_who_hears_whom_and_flags_the_weak_link(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    before = await routes.network_map(adapter, {})
    assert before["scanned_at"] is None and before["links"] == []

    found = await routes.scan(adapter, {})
    assert found["scanned_at"] is not None
    roles = {n["ieee"]: (n["role"], n["device"]) for n in found["nodes"]}
    assert {n["ieee"]: n["lqi"] for n in found["nodes"]}[LAMP] == 35  # its frames arrive as weakly as it is linked
    assert roles == {COORDINATOR: ("coordinator", None), LAMP: ("router", f"zb/{LAMP}"),
                     PLUG: ("router", f"zb/{PLUG}"), CLIMATE: ("end_device", f"zb/{CLIMATE}")}
    links = {(link["source"], link["target"]): (link["lqi"], link["relationship"], link["weak"]) for link in found["links"]}
    assert links == {
        (COORDINATOR, LAMP): (35, "child", True),
        (COORDINATOR, PLUG): (210, "child", False),
        (COORDINATOR, CLIMATE): (120, "child", False),
        (LAMP, COORDINATOR): (35, "parent", True),
        (LAMP, PLUG): (35, "sibling", True),
        (PLUG, COORDINATOR): (210, "parent", False),
        (PLUG, LAMP): (35, "sibling", True),
    }
    assert found["weak_links"] == 4 and found["weak_lqi"] == 60
    assert {"source": COORDINATOR, "destination": LAMP, "next_hop": LAMP} in found["routes"]
    assert await routes.network_map(adapter, {}) == found  # the last scan, served without a new one


async def test_the_map_needs_the_radio(hub, tmp_path):
    adapter = make(hub, tmp_path)
    with pytest.raises(RouteError) as error:
        await routes.network_map(adapter, {})
    assert error.value.status == 409 and "not connected" in str(error.value)
