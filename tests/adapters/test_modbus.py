"""The Modbus adapter against pymodbus's own TCP server."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pymodbus.constants import ExcCodes

from edged.adapters.modbus.adapter import ModbusAdapter
from edged.adapters.modbus.config import ModbusConfig
from edged.adapters.modbus.simulator import registers
from edged.model import Command, CommandStatus, DeviceStatus, Origin, Quality
from tests.adapters import conformance
from tests.adapters.modbus_server import Server


@pytest.fixture
async def server():
    server = Server(units=(1, 2, 3))
    await server.start_tcp()
    yield server
    await server.stop()


def config(port: int, devices: list[dict], **connection) -> ModbusConfig:
    return ModbusConfig.model_validate(
        {
            "type": "modbus",
            "name": "mb",
            "connections": [{"transport": "tcp", "host": "127.0.0.1", "port": port, "timeout": 0.5, **connection,
                             "devices": devices}],
        }
    )


def adapter(hub, tmp_path, port: int, devices: list[dict], **connection) -> ModbusAdapter:
    return ModbusAdapter(config(port, devices, **connection), hub, tmp_path)


def online(hub, device_id: str) -> bool:
    device = hub.devices.get(device_id)
    return device is not None and device.online


def good(hub, device_id: str, key: str, value: object) -> bool:
    r = hub.value(device_id, key)
    return r is not None and r.quality is Quality.GOOD and r.value == value


# Every type in every order, with values whose bytes all differ, so a wrong
# order decodes to a different number. (type, struct code, value, writable)
TYPES = [
    ("int16", "h", -12_345),
    ("uint16", "H", 0xA1B2),
    ("int32", "i", -0x12345678),
    ("uint32", "I", 0xA1B2C3D4),
    ("int64", "q", -0x0123456789ABCDEF),
    ("uint64", "Q", 0xF1E2D3C4B5A69788),
    ("float32", "f", -1234.5625),
    ("float64", "d", 98765.4321),
]
ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]


def wire(code: str, value: object, order: str) -> list[int]:
    """The registers a device using ``order`` holds for ``value`` (built independently of the codec)."""
    data = struct.pack(">" + code, value)  # bytes A B C D ... most significant first
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return list(struct.unpack(f">{len(words)}H", b"".join(words)))


def typed_points() -> tuple[list[dict], dict[str, list[int]], dict[str, object]]:
    points, memory, expected = [], {}, {}
    address = 0
    for name, code, value in TYPES:
        for order in ORDERS:
            key = f"{name}_{order}"
            regs = wire(code, value, order)
            points.append({"key": key, "address": address, "type": name, "order": order, "writable": True})
            memory[key] = [address, *regs]
            expected[key] = value
            address += len(regs)
    return points, memory, expected


async def test_every_type_and_order_decodes(server, hub, watch, running, tmp_path):
    points, memory, expected = typed_points()
    for address, *regs in memory.values():
        await server.set(1, "holding", address, regs)
    running(adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 1, "interval": 0.05, "points": points}]))
    await watch.until(lambda: all(hub.value("mb/d", k) is not None for k in expected))
    assert {k: hub.value("mb/d", k).value for k in expected} == expected
    assert all(hub.value("mb/d", k).quality is Quality.GOOD for k in expected)


@pytest.mark.parametrize("order", ORDERS)
async def test_every_type_writes_back_in_order(server, hub, watch, running, tmp_path, order):
    points, memory, _ = typed_points()
    points = [p for p in points if p["order"] == order]
    running(adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 2, "interval": 0.05, "points": points}]))
    await watch.until(lambda: online(hub, "mb/d"))
    for name, code, value in TYPES:
        key = f"{name}_{order}"
        result = await hub.execute(Command("mb/d", key, value, Origin.API))
        assert result.status is CommandStatus.OK, result.reason
        address, *regs = memory[key]
        assert await server.get(2, "holding", address, len(regs)) == wire(code, value, order)
        assert good(hub, "mb/d", key, value)


async def test_scale_offset_bits_strings_and_coils(server, hub, watch, running, tmp_path):
    await server.set(1, "input", 10, [2301, 0b1010_0000_0000_0101])
    await server.set(1, "input", 20, registers(">6s", b"SN-42\x00"))
    await server.set(1, "input", 30, registers(">6s", b"BADCFE"))  # "ABCDEF", bytes swapped within registers
    await server.set(1, "holding", 40, [0xFF38])  # -200
    await server.set(1, "coil", 7, [True])
    await server.set(1, "discrete", 3, [True])
    points = [
        {"key": "voltage", "table": "input", "address": 10, "scale": 0.1, "unit": "V"},
        {"key": "alarm", "table": "input", "address": 11, "type": "bit", "bit": 0},
        {"key": "door", "table": "input", "address": 11, "type": "bit", "bit": 1},
        {"key": "fault", "table": "input", "address": 11, "type": "bit", "bit": 15},
        {"key": "serial", "table": "input", "address": 20, "type": "string", "length": 3},
        {"key": "swapped", "table": "input", "address": 30, "type": "string", "length": 3, "order": "BADC"},
        {"key": "setpoint", "address": 40, "type": "int16", "scale": 0.5, "offset": 20, "writable": True},
        {"key": "relay", "table": "coil", "address": 7, "writable": True},
        {"key": "input", "table": "discrete", "address": 3},
    ]
    running(adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 1, "interval": 0.05, "points": points}]))
    await watch.until(lambda: all(hub.value("mb/d", p["key"]) for p in points))
    values = {p["key"]: hub.value("mb/d", p["key"]).value for p in points}
    assert values == {
        "voltage": 230.1, "alarm": True, "door": False, "fault": True, "serial": "SN-42", "swapped": "ABCDEF",
        "setpoint": -80.0, "relay": True, "input": True,
    }
    assert hub.devices["mb/d"].points["voltage"].unit == "V"

    assert (await hub.execute(Command("mb/d", "setpoint", 23.5, Origin.RULE))).ok
    assert await server.get(1, "holding", 40, 1) == [7]  # (23.5 - 20) / 0.5
    assert (await hub.execute(Command("mb/d", "relay", False, Origin.RULE))).ok
    assert await server.get(1, "coil", 7, 1) == [False]
    await watch.until(lambda: good(hub, "mb/d", "relay", False))

    too_big = await hub.execute(Command("mb/d", "setpoint", 1e6, Origin.API))
    assert too_big.status is CommandStatus.FAILED
    assert "out of range for int16" in too_big.reason


async def test_neighbouring_addresses_are_read_together(server, hub, watch, running, tmp_path):
    # 0-9 and 12-19 (gap 2, bridged), 200 (too far); coils every 3rd address up to 2097 (2000 bits per read at
    # most); 130 input registers (125 per read at most).
    points = [{"key": f"r{a}", "address": a} for a in [*range(10), *range(12, 20), 200]]
    points += [{"key": f"c{a}", "table": "coil", "address": a} for a in range(0, 2100, 3)]
    points += [{"key": f"i{a}", "table": "input", "address": a} for a in range(130)]
    devices = [{"id": "d", "unit_id": 3, "interval": 0.05, "max_gap": 2, "points": points}]
    running(adapter(hub, tmp_path, server.port, devices))
    await watch.until(lambda: online(hub, "mb/d"))
    await watch.until(lambda: all(hub.value("mb/d", p["key"]) is not None for p in points))
    assert all(hub.value("mb/d", p["key"]).quality is Quality.GOOD for p in points)
    cycle = {(r.function, r.address, r.count) for r in server.reads(3)}
    assert cycle == {(3, 0, 20), (3, 200, 1), (1, 0, 1999), (1, 2001, 97), (4, 0, 125), (4, 125, 5)}


async def test_report_on_change_with_deadband(server, hub, watch, running, tmp_path):
    points = [
        {"key": "level", "address": 0, "deadband": 5},
        {"key": "count", "address": 1},
    ]
    running(adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 1, "interval": 0.02, "points": points}]))
    seen: list[tuple[str, object]] = []
    hub.subscribe(lambda batch: seen.extend((r.key, r.value) for r in batch))
    await watch.until(lambda: good(hub, "mb/d", "count", 0))
    await server.set(1, "holding", 0, [3])  # within the deadband: not reported
    await server.set(1, "holding", 1, [1])
    await watch.until(lambda: good(hub, "mb/d", "count", 1))
    polls = len(server.reads(1))
    server.on_request = watch.poke
    await watch.until(lambda: len(server.reads(1)) >= polls + 3, timeout=5)
    await server.set(1, "holding", 0, [9])  # 9 - 0 >= 5: reported
    await watch.until(lambda: good(hub, "mb/d", "level", 9))
    assert seen.count(("count", 0)) == 1  # unchanged values are not repeated every poll
    assert ("level", 3) not in seen


async def test_unchanged_values_are_reported_again_after_max_interval(server, hub, watch, running, tmp_path):
    points = [{"key": "x", "address": 0, "max_interval": 0.1}]
    running(adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 1, "interval": 0.02, "points": points}]))
    await watch.until(lambda: good(hub, "mb/d", "x", 0))
    first = hub.value("mb/d", "x").ts
    await watch.until(lambda: hub.value("mb/d", "x").ts >= first + 0.1)
    assert hub.value("mb/d", "x").value == 0


async def test_groups_poll_at_their_own_interval(server, hub, watch, running, tmp_path):
    devices = [{"id": "d", "unit_id": 1, "interval": 10, "groups": {"fast": 0.02},
                "points": [{"key": "fast", "address": 0, "group": "fast"}, {"key": "slow", "address": 50}]}]
    running(adapter(hub, tmp_path, server.port, devices))
    server.on_request = watch.poke
    await watch.until(lambda: sum(r.address == 0 for r in server.reads(1)) >= 30 and good(hub, "mb/d", "slow", 0))
    assert sum(r.address == 50 for r in server.reads(1)) == 1  # polled once at start, next in 10 s


async def test_exception_responses_mark_bad_then_offline_then_recover(server, hub, watch, running, tmp_path):
    devices = [
        {"id": "bad", "unit_id": 1, "interval": 0.02, "fail_after": 3, "points": [{"key": "x", "address": 0}]},
        {"id": "ok", "unit_id": 2, "interval": 0.02, "points": [{"key": "y", "address": 0}]},
    ]
    await server.set(1, "holding", 0, [11])
    running(adapter(hub, tmp_path, server.port, devices))
    await watch.until(lambda: good(hub, "mb/bad", "x", 11) and online(hub, "mb/bad"))

    server.failing[1] = ExcCodes.DEVICE_FAILURE
    await watch.until(lambda: hub.value("mb/bad", "x").quality is Quality.BAD)
    assert hub.value("mb/bad", "x").value == 11  # the last good value, flagged
    await watch.until(lambda: not online(hub, "mb/bad"))
    assert online(hub, "mb/ok")  # the other unit on the line keeps being polled
    reads_of_ok = len(server.reads(2))
    server.on_request = watch.poke
    await watch.until(lambda: len(server.reads(2)) > reads_of_ok + 5)

    del server.failing[1]
    await server.set(1, "holding", 0, [12])
    await watch.until(lambda: good(hub, "mb/bad", "x", 12) and online(hub, "mb/bad"))
    statuses = [(e.device_id, e.online) for e in watch.events if isinstance(e, DeviceStatus)]
    assert statuses.count(("mb/bad", False)) == 1



async def test_a_hole_in_the_register_map_costs_only_its_own_point(server, hub, watch, running, tmp_path):
    points = [{"key": f"r{a}", "address": a} for a in range(6)]
    await server.set(1, "holding", 0, [10, 11, 12, 13, 14, 15])
    server.holes[1] = {3}  # the device has no register 3: any read covering it is refused
    running(adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 1, "interval": 0.05, "points": points}]))
    await watch.until(lambda: all(hub.value("mb/d", f"r{a}") is not None for a in range(6)))
    assert [good(hub, "mb/d", f"r{a}", 10 + a) for a in range(6)] == [True, True, True, False, True, True]
    assert hub.value("mb/d", "r3").quality is Quality.BAD
    assert online(hub, "mb/d")
    assert server.reads(1)[0].count == 6  # one coalesced read first, then one read per point
    assert {(r.address, r.count) for r in server.reads(1)[1:]} == {(a, 1) for a in range(6)}

async def test_stopped_server_then_recovery(server, hub, watch, running, tmp_path):
    devices = [{"id": "d", "unit_id": 1, "interval": 0.02, "fail_after": 2, "points": [{"key": "x", "address": 5}]}]
    await server.set(1, "holding", 5, [42])
    a = adapter(hub, tmp_path, server.port, devices)
    running(a)
    await watch.until(lambda: good(hub, "mb/d", "x", 42))
    port = server.port
    await server.stop()
    await watch.until(lambda: not online(hub, "mb/d") and hub.value("mb/d", "x").quality is Quality.BAD)

    revived = Server(units=(1,))
    await revived.start_tcp(port)  # the same address, as a restarted device would have
    try:
        await revived.set(1, "holding", 5, [43])
        await watch.until(lambda: good(hub, "mb/d", "x", 43) and online(hub, "mb/d"), timeout=15)
        assert a.reconnects_total >= 1
    finally:
        await revived.stop()


async def test_write_goes_ahead_of_a_long_poll_cycle(server, hub, watch, running, tmp_path):
    # Three units on one connection, 20 separate reads per cycle each (gaps too wide to bridge). The server
    # holds a read until released, so the other units' poll reads queue up behind it; the write, queued
    # last, must be the next request on the line, not wait for the queued reads or the rest of the cycle.
    devices = [
        {"id": f"d{unit}", "unit_id": unit, "interval": 0.05,
         "points": [{"key": f"r{i}", "address": i * 10} for i in range(20)]
         + [{"key": "sp", "address": 500, "writable": True}]}
        for unit in (1, 2, 3)
    ]
    a = adapter(hub, tmp_path, server.port, devices)
    running(a)
    await watch.until(lambda: all(online(hub, f"mb/d{unit}") for unit in (1, 2, 3)))

    a.buses[0].on_queue = watch.poke
    server.hold = asyncio.Event()
    await server.holding_now.wait()
    await watch.until(lambda: a.buses[0].queued >= 2)  # other units' reads are waiting their turn
    held = len(server.requests)
    write = asyncio.create_task(hub.execute(Command("mb/d2", "sp", 7, Origin.CLOUD)))
    await watch.until(lambda: a.buses[0].queued >= 3)
    server.hold.set()
    server.hold = None
    result = await write
    assert result.ok, result.reason
    assert (server.requests[held].function, server.requests[held].unit) == (6, 2)
    assert await server.get(2, "holding", 500, 1) == [7]


async def test_read_only_and_bad_values_are_rejected_with_reasons(server, hub, watch, running, tmp_path):
    points = [{"key": "ro", "address": 0}, {"key": "text", "address": 10, "type": "string", "length": 2,
                                             "writable": True}]
    running(adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 1, "interval": 0.05, "points": points}]))
    await watch.until(lambda: online(hub, "mb/d"))
    await conformance.check_read_only_rejected(hub, "mb/d", "ro")
    result = await hub.execute(Command("mb/d", "text", "too long", Origin.API))
    assert result.status is CommandStatus.FAILED
    assert "do not fit 2 registers" in result.reason
    assert (await hub.execute(Command("mb/d", "text", "ok", Origin.API))).ok
    await watch.until(lambda: good(hub, "mb/d", "text", "ok"))


async def test_conformance(server, hub, watch, running, tmp_path):
    points = [{"key": "power", "table": "input", "address": 0, "type": "float32", "order": "CDAB"},
              {"key": "limit", "address": 0, "writable": True}]
    a = adapter(hub, tmp_path, server.port, [{"id": "d", "unit_id": 1, "interval": 0.05, "points": points}])
    task = running(a)
    await conformance.check_devices_report(a, hub, watch)
    await conformance.check_read_only_rejected(hub, "mb/d", "power")
    await conformance.check_write_round_trip(hub, watch, "mb/d", "limit", 1234)
    await conformance.check_stop_marks_offline(a, hub, task)


async def test_rtu_frames_over_tcp_through_a_serial_device_server(hub, watch, running, tmp_path):
    from pymodbus import FramerType

    server = Server(units=(1,))
    await server.start_tcp(framer=FramerType.RTU)  # what an RS-485-to-Ethernet converter in transparent mode passes on
    try:
        points, memory, expected = typed_points()
        for address, *regs in memory.values():
            await server.set(1, "holding", address, regs)
        devices = [{"id": "d", "unit_id": 1, "interval": 0.05, "points": points}]
        running(adapter(hub, tmp_path, server.port, devices, framing="rtu"))
        await watch.until(lambda: all(hub.value("mb/d", k) is not None for k in expected))
        assert {k: hub.value("mb/d", k).value for k in expected} == expected
        result = await hub.execute(Command("mb/d", "float32_CDAB", 21.5, Origin.API))
        assert result.status is CommandStatus.OK, result.reason
        address, *_ = memory["float32_CDAB"]
        assert await server.get(1, "holding", address, 2) == wire("f", 21.5, "CDAB")
    finally:
        await server.stop()
