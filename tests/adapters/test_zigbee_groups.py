"""Groups and direct bindings through the simulated radio: the Groups cluster
and ZDO Bind requests the devices get, multicast commands, and a remote's
command reaching a lamp with no gateway in the loop."""

from __future__ import annotations

import asyncio

import pytest
import zigpy.types as t
import zigpy.zdo.types as zdo_t
from zigpy.zcl.clusters.general import Groups, LevelControl, OnOff, PowerConfiguration

from edged.adapter import RouteError
from edged.adapters.zigbee import routes
from edged.adapters.zigbee.adapter import ZigbeeAdapter
from edged.adapters.zigbee.config import ZigbeeConfig
from edged.errors import CommandError
from edged.model import Command, CommandStatus, Origin, Quality

IEEE = {"lamp": "00:0d:6f:00:0e:d9:ed:01", "lamp2": "00:0d:6f:00:0e:d9:ed:02",
        "plug": "00:0d:6f:00:0e:d9:ed:03", "remote": "00:0d:6f:00:0e:d9:ed:04"}


def make(hub, tmp_path, **overrides) -> ZigbeeAdapter:
    config = {
        "type": "zigbee",
        "name": "zb",
        "radio": "simulated",
        "simulated": {
            "devices": [{"kind": kind.rstrip("2"), "ieee": ieee} for kind, ieee in IEEE.items()],
            "report_interval": 0,
        },
        **overrides,
    }
    return ZigbeeAdapter(ZigbeeConfig.model_validate(config), hub, tmp_path / "zb")


def node(adapter: ZigbeeAdapter, name: str):
    return adapter.app.node(IEEE[name])


def on(hub, name: str) -> bool | None:
    reading = hub.value(f"zb/{IEEE[name]}", "on")
    return None if reading is None else reading.value


async def pair(adapter: ZigbeeAdapter, hub, watch) -> None:
    async with asyncio.timeout(10):
        await adapter.ready.wait()
    await adapter.permit_join(30)
    last = {"lamp": "color_temp", "lamp2": "color_temp", "plug": "demand", "remote": "battery"}

    def configured() -> bool:
        return all((r := hub.value(f"zb/{IEEE[n]}", key)) is not None and r.quality is Quality.GOOD for n, key in last.items())

    await watch.until(configured)


async def converged(adapter: ZigbeeAdapter, predicate) -> None:
    """Wait until ``predicate()`` holds, checking again each time the adapter has converged."""
    async with asyncio.timeout(5):
        while not predicate():
            adapter.converged.clear()
            await adapter.converged.wait()


async def test_a_group_is_a_hub_device_whose_writes_are_one_multicast(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    group = adapter.create_group("hall")
    assert group.group_id == 1
    assert set(hub.devices["zb/group/0x0001"].points) == {"on", "toggle", "level", "color_temp"}

    await adapter.add_to_group("hall", f"zb/{IEEE['lamp']}")
    await adapter.add_to_group(1, IEEE["plug"])
    assert node(adapter, "lamp").commands[-1] == (Groups.cluster_id, "add", {"group_id": 1, "group_name": "hall"})
    assert node(adapter, "lamp").groups == {1} and node(adapter, "plug").groups == {1}
    assert adapter.groups()[0]["members"] == [{"device": f"zb/{IEEE['lamp']}", "endpoint": 1},
                                              {"device": f"zb/{IEEE['plug']}", "endpoint": 1}]

    result = await hub.execute(Command("zb/group/0x0001", "on", True, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    packet = adapter.app.multicasts[-1]
    assert (packet.dst.addr_mode, packet.dst.address, packet.cluster_id) == (t.AddrMode.Group, 1, OnOff.cluster_id)
    assert len(adapter.app.multicasts) == 1  # one frame for the whole group
    await watch.until(lambda: on(hub, "lamp") is True and on(hub, "plug") is True)
    assert on(hub, "lamp2") is False

    await adapter.remove_from_group("hall", IEEE["plug"])
    assert node(adapter, "plug").groups == set()
    result = await hub.execute(Command("zb/group/0x0001", "level", 50, Origin.API))
    assert result.status is CommandStatus.OK, result.reason
    assert node(adapter, "lamp").commands[-1][:2] == (LevelControl.cluster_id, "move_to_level_with_on_off")
    assert node(adapter, "plug").commands[-1][0] == Groups.cluster_id  # the plug got nothing more

    assert await adapter.delete_group("hall") == 1
    assert "zb/group/0x0001" not in hub.devices and node(adapter, "lamp").groups == set()
    with pytest.raises(CommandError, match="has no group 'hall'"):
        await adapter.add_to_group("hall", IEEE["lamp"])
    with pytest.raises(CommandError, match="no Groups cluster"):
        await adapter.add_to_group(adapter.create_group("porch").group_id, IEEE["remote"])


async def test_groups_are_kept_in_zigpys_database(hub, watch, running, tmp_path):
    first = make(hub, tmp_path)
    task = running(first)
    await pair(first, hub, watch)
    first.create_group("hall", 0x0010)
    await first.add_to_group(0x0010, IEEE["lamp2"])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    second = make(hub, tmp_path)
    running(second)
    async with asyncio.timeout(10):
        await second.ready.wait()
    assert second.groups() == [{"id": 16, "name": "hall", "device": "zb/group/0x0010",
                                "members": [{"device": f"zb/{IEEE['lamp2']}", "endpoint": 1}]}]
    assert hub.devices["zb/group/0x0010"].online


async def test_a_bound_remote_switches_the_lamp_without_the_gateway(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    remote, lamp = node(adapter, "remote"), node(adapter, "lamp")

    link = adapter.link(f"zb/{IEEE['remote']}", f"zb/{IEEE['lamp']}", "on_off")
    await adapter.bind(link)
    command, args = remote.zdo_requests[-1]
    assert command == zdo_t.ZDOCmd.Bind_req
    assert args == (t.EUI64.convert(IEEE["remote"]), 1, OnOff.cluster_id,
                    zdo_t.MultiAddress(addrmode=0x03, ieee=t.EUI64.convert(IEEE["lamp"]), endpoint=1))
    assert adapter.bindings() == [{"source": IEEE["remote"], "source_ep": 1, "cluster": 6,
                                   "target": IEEE["lamp"], "target_ep": 1, "origin": "operator"}]

    remote.press(OnOff.cluster_id, "toggle")
    await watch.until(lambda: on(hub, "lamp") is True)
    assert lamp.commands[-1][:2] == (OnOff.cluster_id, "toggle")
    assert not adapter.app.multicasts  # the coordinator sent nothing

    await adapter.unbind(link)
    assert remote.zdo_requests[-1][0] == zdo_t.ZDOCmd.Unbind_req
    assert [cluster for _, cluster, _ in remote.binds] == [PowerConfiguration.cluster_id]  # its reports to the gateway stay
    assert adapter.bindings() == []


async def test_a_remote_bound_to_a_group_switches_every_member(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    adapter.create_group("hall", 0x0020)
    await adapter.add_to_group("hall", IEEE["lamp"])
    await adapter.add_to_group("hall", IEEE["lamp2"])
    await adapter.bind(adapter.link(IEEE["remote"], "zb/group/0x0020", "on_off"))
    assert node(adapter, "remote").zdo_requests[-1][1][3] == zdo_t.MultiAddress(addrmode=0x01, nwk=0x0020)

    node(adapter, "remote").press(OnOff.cluster_id, "on")
    await watch.until(lambda: on(hub, "lamp") is True and on(hub, "lamp2") is True)
    assert on(hub, "plug") is False


async def test_configured_groups_and_bindings_are_made_when_devices_join(hub, watch, running, tmp_path):
    declared = {
        "groups": [{"id": 0x30, "name": "living", "members": [IEEE["lamp"], f"{IEEE['lamp2']}/1"]}],
        "bindings": [{"source": IEEE["remote"], "target": "living", "cluster": "on_off"},
                     {"source": IEEE["remote"], "target": IEEE["lamp2"], "cluster": "level"}],
    }
    first = make(hub, tmp_path, **declared)
    task = running(first)
    await pair(first, hub, watch)
    remote = node(first, "remote")
    await converged(first, lambda: len(remote.binds) == 3 and node(first, "lamp").groups == node(first, "lamp2").groups == {0x30})
    assert node(first, "plug").groups == set()
    remote.press(OnOff.cluster_id, "on")
    await watch.until(lambda: on(hub, "lamp") is True and on(hub, "lamp2") is True)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    # the file drops the level binding and lamp2: the gateway converges at start
    declared["groups"][0]["members"] = [IEEE["lamp"]]
    declared["bindings"] = declared["bindings"][:1]
    second = make(hub, tmp_path, **declared)
    running(second)
    async with asyncio.timeout(10):
        await second.ready.wait()
    remote = node(second, "remote")
    await converged(second, lambda: any(c == zdo_t.ZDOCmd.Unbind_req for c, _ in remote.zdo_requests))
    unbound = next(args for c, args in remote.zdo_requests if c == zdo_t.ZDOCmd.Unbind_req)
    assert unbound[2] == LevelControl.cluster_id
    assert [b["cluster"] for b in second.bindings()] == [OnOff.cluster_id]
    assert [m["device"] for m in second.groups()[0]["members"]] == [f"zb/{IEEE['lamp']}"]
    assert (Groups.cluster_id, "remove", {"group_id": 0x30}) in node(second, "lamp2").commands


async def test_group_and_bind_routes_check_what_they_are_given(hub, watch, running, tmp_path):
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    created = await routes.group_create(adapter, {"name": "hall"})
    assert created["device"] == "zb/group/0x0001"
    added = await routes.group_add(adapter, {"group": "hall", "device": f"zb/{IEEE['lamp']}"})
    assert added["members"] == [{"device": f"zb/{IEEE['lamp']}", "endpoint": 1}]
    assert (await routes.group_list(adapter, {}))["groups"] == [added]
    bound = await routes.bind(adapter, {"source": f"zb/{IEEE['remote']}", "target": "hall", "cluster": "on_off"})
    assert bound["bound"]["group"] == 1
    assert len((await routes.binding_list(adapter, {}))["bindings"]) == 1
    with pytest.raises(RouteError) as error:
        await routes.bind(adapter, {"source": f"zb/{IEEE['remote']}", "target": "hall", "cluster": "humidity"})
    assert error.value.status == 400 and "on_off" in str(error.value)
    with pytest.raises(RouteError) as error:
        await routes.group_add(adapter, {"group": "nope", "device": IEEE["lamp"]})
    assert error.value.status == 404
    with pytest.raises(RouteError) as error:
        await routes.group_create(adapter, {"name": "a name far too long for zigbee"})
    assert error.value.status == 400
    assert (await routes.unbind(adapter, {"source": f"zb/{IEEE['remote']}", "target": "hall"}))["unbound"]["group"] == 1
    assert (await routes.group_delete(adapter, {"group": "hall"})) == {"deleted": 1}


async def test_an_unreadable_binding_record_is_started_afresh(hub, watch, running, tmp_path):
    (tmp_path / "zb").mkdir(mode=0o700)
    (tmp_path / "zb" / "bindings.json").write_text("{not json")
    adapter = make(hub, tmp_path)
    running(adapter)
    await pair(adapter, hub, watch)
    assert adapter.bindings() == [] and adapter.stats().errors >= 1
    await adapter.bind(adapter.link(IEEE["remote"], IEEE["lamp"], "on_off"))
    assert '"origin": "operator"' in (tmp_path / "zb" / "bindings.json").read_text()
