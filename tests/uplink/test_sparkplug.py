"""The Sparkplug B profile against a real mosquitto and a host application that
decodes every message: births, data and their sequence numbers, deaths,
rebirths, device commands, refused commands and the primary host's STATE."""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import Command, Device, Point, Quality, Reading, ValueType
from edged.outbox import OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService
from edged.uplink.sparkplug import SparkplugLink, edged_id, sparkplug_id
from edged.uplink.sparkplug_payload import DataType
from edged.uplink.uplinks import single
from tests.uplink.peers import Broker
from tests.uplink.sparkplug_host import Host, Message, birth_types, hosting, metric_value, properties

NODE = "spBv1.0/plant/{}/gw1"
BOILER = Device("plant/boiler", "plant", points={
    "temperature": Point("temperature", ValueType.FLOAT, "Cel"),
    "burner": Point("burner", ValueType.BOOL),
    "starts": Point("starts", ValueType.INT),
    "mode": Point("mode", ValueType.STR),
}, online=True)  # fmt: skip


def service(tmp_path: Path, hub: Hub, port: int, row_readings: int = 1000, uplink: dict[str, Any] | None = None,
            **sparkplug: Any) -> UplinkService:  # fmt: skip
    config = TypeAdapter(UplinkConfig).validate_python({
        "type": "mqtt", "host": "127.0.0.1", "port": port, "profile": "sparkplug_b", "inflight": 8,
        "connect_timeout": 2, "keepalive": 5, "sparkplug": {"group_id": "plant", **sparkplug}, **(uplink or {}),
    })  # fmt: skip
    return single(OutboxConfig(row_readings=row_readings), config, hub, tmp_path / "state", "gw1",
                         backoff=Backoff(initial=0.05, maximum=0.2))  # fmt: skip


def sequenced(host: Host) -> list[Message]:
    """The messages that carry a seq, in the order they arrived."""
    return [m for m in host.messages if m.verb not in ("STATE", "NDEATH", "NCMD", "DCMD")]


def check_sequence(host: Host) -> None:
    """seq is 0 on every NBIRTH and grows by one (mod 256) from message to message."""
    seqs = [(m.verb, m.payload.seq) for m in sequenced(host)]
    assert seqs[0] == ("NBIRTH", 0)
    for (_, before), (verb, seq) in itertools.pairwise(seqs):
        assert seq == (0 if verb == "NBIRTH" else (before + 1) % 256), seqs


def bdseq(message: Message) -> int:
    return next(metric_value(m) for m in message.payload.metrics if m.name == "bdSeq")


def data_readings(host: Host, device: str, aliases: dict[int, str]) -> list[tuple[str, Any, int, bool]]:
    """(point, value, ts ms, historical) of every DDATA metric of ``device``."""
    return [(aliases[m.alias], metric_value(m), m.timestamp, m.is_historical)
            for message in host.of("DDATA") if message.device == device for m in message.payload.metrics]  # fmt: skip


def aliases(birth: Message) -> dict[int, str]:
    return {m.alias: m.name for m in birth.payload.metrics}


@pytest.mark.parametrize("field", ["group_id", "edge_node_id", "primary_host_id"])
@pytest.mark.parametrize("bad", ["", "a/b", "plant+", "#"])
def test_sparkplug_ids_are_one_topic_level(field: str, bad: str) -> None:
    sparkplug = {"group_id": "plant", field: bad}
    with pytest.raises(ValidationError, match=f"sparkplug.{field}"):
        TypeAdapter(UplinkConfig).validate_python({"type": "mqtt", "host": "h", "profile": "sparkplug_b", "sparkplug": sparkplug})


def test_device_ids_map_to_sparkplug_ids_and_back() -> None:
    for device in ("modbus/boiler", "a:b/c", "x+y#z/%3A", "plain", "zigbee/00:11:22"):
        spark = sparkplug_id(device)
        assert not set(spark) & set("/+#")
        assert edged_id(spark) == device
    assert sparkplug_id("modbus/boiler") == "modbus:boiler"
    assert len({sparkplug_id(d) for d in ("a/b", "a:b", "a%3Ab")}) == 3


async def test_births_then_data_in_sequence_with_the_hub_values(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    hub.add_device(BOILER)
    hub.publish([Reading("plant/boiler", "temperature", 20.5, 1767225600.25), Reading("plant/boiler", "mode", "eco", 1767225600.5)])
    async with hosting(broker.port) as host:
        uplink = service(tmp_path, hub, broker.port, row_readings=1)  # one DDATA per reading: seq wraps
        running(uplink)
        await host.until(lambda: host.of("DBIRTH"))
        nbirth, dbirth = host.of("NBIRTH")[0], host.of("DBIRTH")[0]
        assert (nbirth.topic, nbirth.payload.seq, bdseq(nbirth)) == (NODE.format("NBIRTH"), 0, 0)
        node = {m.name: metric_value(m) for m in nbirth.payload.metrics}
        assert node["Node Control/Rebirth"] is False
        assert dbirth.topic == NODE.format("DBIRTH") + "/plant:boiler"
        assert birth_types(dbirth) == {"temperature": DataType.DOUBLE, "burner": DataType.BOOLEAN, "starts": DataType.INT64,
                                       "mode": DataType.STRING}  # fmt: skip
        born = {m.name: m for m in dbirth.payload.metrics}
        assert properties(born["temperature"]) == {"engUnit": "Cel"}
        assert (metric_value(born["temperature"]), born["temperature"].timestamp) == (20.5, 1767225600250)
        assert born["starts"].is_null

        now = time.time()
        sent = []
        for n in range(300):
            quality = Quality.UNCERTAIN if n == 7 else Quality.GOOD
            batch = [Reading("plant/boiler", "starts", n, now + n / 1000),
                     Reading("plant/boiler", "temperature", 20 + n / 4, now + n / 1000, quality)]  # fmt: skip
            hub.publish(batch)
            sent += batch
        await host.until(lambda: len(data_readings(host, "plant:boiler", aliases(dbirth))) >= 600)
        got = data_readings(host, "plant:boiler", aliases(dbirth))
        assert sorted(got, key=lambda r: (r[2], r[0])) == sorted(
            [(r.key, r.value, round(r.ts * 1000), False) for r in sent], key=lambda r: (r[2], r[0])
        )
        assert all(m.name == "" and not m.HasField("datatype") for d in host.of("DDATA") for m in d.payload.metrics)
        uncertain = [m for d in host.of("DDATA") for m in d.payload.metrics if properties(m)]
        assert [properties(m) for m in uncertain] == [{"Quality": 64}]
        assert len(sequenced(host)) > 256
        check_sequence(host)


async def test_ndeath_on_a_lost_connection_carries_the_bdseq_of_its_birth(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    hub.add_device(BOILER)
    async with hosting(broker.port) as host:
        uplink = service(tmp_path, hub, broker.port)
        task = running(uplink)
        await host.until(lambda: host.of("DBIRTH"))
        link = uplink.link
        assert isinstance(link, SparkplugLink) and link._session is not None
        link._session.client._client.socket().shutdown(socket.SHUT_RDWR)  # the line drops: no DISCONNECT
        await host.until(lambda: len(host.of("NBIRTH")) == 2)
        first, second = host.of("NBIRTH")
        deaths = host.of("NDEATH")
        assert [bdseq(d) for d in deaths] == [bdseq(first)] == [0]
        assert bdseq(second) == 1
        assert host.messages.index(deaths[0]) < host.messages.index(second)
        hub.publish([Reading("plant/boiler", "starts", 5, time.time())])
        await host.until(lambda: host.of("DDATA"))
        check_sequence(host)
        task.cancel()  # a clean stop says NDEATH itself
        await host.until(lambda: len(host.of("NDEATH")) == 2)
        assert bdseq(host.of("NDEATH")[1]) == 1

        # A restart goes on from the bdSeq it stored.
        running(service(tmp_path, hub, broker.port))
        await host.until(lambda: len(host.of("NBIRTH")) == 3)
        assert bdseq(host.of("NBIRTH")[2]) == 2


async def test_rebirth_command_publishes_every_birth_again(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    hub.add_device(BOILER)
    hub.add_device(Device("plant/pump", "plant", points={"speed": Point("speed", ValueType.INT, "1/min")}, online=True))
    async with hosting(broker.port) as host:
        running(service(tmp_path, hub, broker.port))
        await host.until(lambda: len(host.of("DBIRTH")) == 2)
        hub.publish([Reading("plant/pump", "speed", 1200, time.time())])
        await host.until(lambda: host.of("DDATA"))
        await host.command(NODE.format("NCMD"), {"name": "Node Control/Rebirth", "datatype": DataType.BOOLEAN, "boolean_value": True})
        await host.until(lambda: len(host.of("DBIRTH")) == 4)
        assert [m.verb for m in sequenced(host)][-3:] == ["NBIRTH", "DBIRTH", "DBIRTH"]
        second = host.of("NBIRTH")[1]
        assert (second.payload.seq, bdseq(second)) == (0, bdseq(host.of("NBIRTH")[0]))
        pump = next(m for m in host.of("DBIRTH")[2:] if m.device == "plant:pump")
        assert [(m.name, metric_value(m)) for m in pump.payload.metrics] == [("speed", 1200)]
        hub.publish([Reading("plant/pump", "speed", 1300, time.time())])
        await host.until(lambda: len(host.of("DDATA")) == 2)
        check_sequence(host)


def writable_pump(hub: Hub) -> list[Command]:
    """An online ``sim/pump`` whose writes take effect: the device then reports the new value."""
    hub.add_device(Device("sim/pump", "sim", points={
        "speed": Point("speed", ValueType.INT, writable=True),
        "on": Point("on", ValueType.BOOL, writable=True),
        "setpoint": Point("setpoint", ValueType.FLOAT, "Cel", writable=True),
        "hours": Point("hours", ValueType.INT),
    }, online=True))  # fmt: skip
    writes: list[Command] = []

    async def write(command: Command) -> None:
        writes.append(command)
        hub.publish([Reading(command.device_id, command.key, command.value, time.time())])

    hub.attach_writer("sim", write)
    return writes


async def test_device_commands_write_and_the_new_value_comes_back(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    writes = writable_pump(hub)
    async with hosting(broker.port) as host:
        running(service(tmp_path, hub, broker.port))
        await host.until(lambda: host.of("DBIRTH"))
        birth = host.of("DBIRTH")[0]
        alias = {name: number for number, name in aliases(birth).items()}
        dcmd = NODE.format("DCMD") + "/sim:pump"
        await host.command(dcmd, {"name": "speed", "datatype": DataType.INT64, "long_value": 1450})
        await host.command(dcmd, {"alias": alias["on"], "boolean_value": True},
                           {"name": "setpoint", "datatype": DataType.FLOAT, "float_value": 21.5})  # fmt: skip
        await host.command(dcmd, {"name": "speed", "datatype": DataType.INT32, "int_value": 2**32 - 5})  # -5 as Int32
        await host.until(lambda: len(writes) == 4)
        assert [(c.key, c.value, c.origin) for c in writes] == [
            ("speed", 1450, "cloud"),
            ("on", True, "cloud"),
            ("setpoint", 21.5, "cloud"),
            ("speed", -5, "cloud"),
        ]
        # Each write comes back as DDATA: the device's reading and the command's answer.
        await host.until(lambda: sum(r[0] == "speed" for r in data_readings(host, "sim:pump", aliases(birth))) >= 4)
        values = [(key, value) for key, value, _, _ in data_readings(host, "sim:pump", aliases(birth))]
        assert {("speed", 1450), ("on", True), ("setpoint", 21.5), ("speed", -5)} <= set(values)

        # A write the Hub refuses (a read-only point) is answered with the current value and why.
        hub.publish([Reading("sim/pump", "hours", 17, time.time())])
        await host.command(dcmd, {"name": "hours", "datatype": DataType.INT64, "long_value": 0})
        answered = lambda: [m for d in host.of("DDATA") for m in d.payload.metrics if "writeStatus" in properties(m)]  # noqa: E731
        await host.until(answered)
        (refusal,) = answered()
        assert (aliases(birth)[refusal.alias], metric_value(refusal)) == ("hours", 17)
        assert properties(refusal)["writeStatus"] == "rejected"
        assert "read-only" in properties(refusal)["writeReason"]

        # A write to an offline device is held: the answer says pending, between a birth and a death.
        hub.set_online("sim/pump", False)
        await host.until(lambda: host.messages[-1].verb == "DDEATH")
        await host.command(dcmd, {"name": "speed", "datatype": DataType.INT64, "long_value": 7})
        await host.until(lambda: len(answered()) == 2)
        assert properties(answered()[1])["writeStatus"] == "pending"
        await host.until(lambda: [m.verb for m in host.messages[-3:]] == ["DBIRTH", "DDATA", "DDEATH"])
        assert len(writes) == 4
        hub.set_online("sim/pump", True)  # the held write is carried out now
        await host.until(lambda: len(writes) == 5)
        assert (writes[4].key, writes[4].value) == ("speed", 7)
        check_sequence(host)


async def test_malformed_commands_are_refused_and_the_node_goes_on(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    writes = writable_pump(hub)
    async with hosting(broker.port) as host:
        running(service(tmp_path, hub, broker.port))
        await host.until(lambda: host.of("DBIRTH"))
        dcmd = NODE.format("DCMD") + "/sim:pump"
        await host.publish(dcmd, b"\xff\x00garbage\x12\x99")
        await host.command(dcmd, {"name": "no such point", "datatype": DataType.INT64, "long_value": 1})
        await host.command(dcmd, {"name": "speed", "datatype": DataType.STRING, "string_value": "fast"})
        await host.command(dcmd, {"name": "on", "datatype": DataType.BOOLEAN, "boolean_value": True},
                           {"name": "speed", "datatype": DataType.STRING, "string_value": "x" * 100_000})  # fmt: skip
        await host.command(dcmd, {"name": "speed", "datatype": DataType.INT8, "int_value": 300})
        await host.command(NODE.format("DCMD") + "/sim:nothing", {"name": "speed", "long_value": 1})
        await host.command(NODE.format("DCMD") + "/sim%2Fpump", {"name": "speed", "long_value": 1})  # not as edged writes it
        await host.command(NODE.format("NCMD"), {"name": "Node Control/Reboot", "boolean_value": True})
        await host.publish(NODE.format("NCMD"), b"\x0a\xff\xff\xff")
        await host.publish(dcmd, b"\x12\x06\x0a\x02\xff\xfe\x20\x04")  # a name that is not UTF-8

        def rejections() -> list[str]:
            return [metric_value(m) for d in host.of("NDATA") for m in d.payload.metrics]

        await host.until(lambda: len(rejections()) == 10)
        reasons = rejections()
        assert reasons[0].startswith("DCMD/sim:pump: bad Sparkplug payload")
        assert "unknown metric 'no such point'" in reasons[1]
        assert "datatype STRING does not fit a int point" in reasons[2]
        assert "bytes; at most 65536 are taken" in reasons[3]
        assert "out of the range of INT8" in reasons[4]
        assert "unknown device 'sim/nothing'" in reasons[5]
        assert "unknown device 'sim%2Fpump'" in reasons[6]
        assert reasons[7].startswith("NCMD: only Node Control/Rebirth is taken")
        assert reasons[8].startswith("NCMD: bad Sparkplug payload")
        assert "unknown metric b'\\xff\\xfe'" in reasons[9]
        assert writes == []  # nothing of a refused message ran
        await host.command(NODE.format("DCMD") + "/sim:pump", {"name": "speed", "datatype": DataType.UINT16, "int_value": 900})
        await host.until(lambda: writes)
        assert writes[0].value == 900
        check_sequence(host)


async def test_data_waits_for_the_primary_host_and_comes_as_history(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    hub.add_device(BOILER)
    async with hosting(broker.port) as host:
        await host.state("scada", False, 1000)
        uplink = service(tmp_path, hub, broker.port, primary_host_id="scada")
        running(uplink)
        await uplink.wait_for(lambda: uplink.outbox.is_open)
        start = time.time()
        for n in range(20):
            hub.publish([Reading("plant/boiler", "starts", n, start + n / 1000)])
        await uplink.wait_for(lambda: uplink.outbox.depth == 20)
        assert not uplink.connected
        await host.state("scada", True, 2000)
        await host.until(lambda: host.of("DBIRTH"))
        birth = host.of("DBIRTH")[0]
        await host.until(lambda: len(data_readings(host, "plant:boiler", aliases(birth))) == 20)
        assert [m.verb for m in sequenced(host)][:2] == ["NBIRTH", "DBIRTH"]
        first = data_readings(host, "plant:boiler", aliases(birth))
        assert first == [("starts", n, round((start + n / 1000) * 1000), True) for n in range(20)]
        await uplink.wait_for(lambda: uplink.outbox.depth == 0)

        hub.publish([Reading("plant/boiler", "starts", 100, time.time())])
        await host.until(lambda: len(data_readings(host, "plant:boiler", aliases(birth))) == 21)
        assert data_readings(host, "plant:boiler", aliases(birth))[-1][3] is False  # live, not history

        # The host goes away: the node dies, and holds its data until the host is back.
        await host.state("scada", False, 3000)
        await host.until(lambda: host.of("NDEATH"))
        assert bdseq(host.of("NDEATH")[0]) == bdseq(host.of("NBIRTH")[0])
        await host.state("scada", False, 500)  # an older STATE changes nothing
        later = time.time()
        for n in range(30):
            hub.publish([Reading("plant/boiler", "starts", 200 + n, later + n / 1000)])
        await uplink.wait_for(lambda: uplink.outbox.depth == 30 and not uplink.connected)
        assert len(data_readings(host, "plant:boiler", aliases(birth))) == 21
        await host.state("scada", True, 4000)
        await host.until(lambda: len(host.of("DBIRTH")) == 2)
        again = aliases(host.of("DBIRTH")[1])
        await host.until(lambda: len(data_readings(host, "plant:boiler", again)) >= 51)
        await uplink.wait_for(lambda: uplink.outbox.depth == 0)
        assert len(host.of("NBIRTH")) == 2
        stored = [r for r in data_readings(host, "plant:boiler", again) if r[1] >= 200]
        assert stored == [("starts", 200 + n, round((later + n / 1000) * 1000), True) for n in range(30)]
        assert len(data_readings(host, "plant:boiler", again)) == 51  # nothing lost, nothing twice


async def test_devices_are_born_and_die_as_they_come_and_go(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    hub.add_device(BOILER)
    async with hosting(broker.port) as host:
        running(service(tmp_path, hub, broker.port))
        await host.until(lambda: host.of("DBIRTH"))

        def story(device: str) -> list[str]:
            return [m.verb for m in host.messages if m.device == device and m.verb in ("DBIRTH", "DDATA", "DDEATH")]

        # A device that joins is born before its first data.
        hub.add_device(Device("plant/valve", "plant", points={"open": Point("open", ValueType.BOOL)}, online=True))
        hub.publish([Reading("plant/valve", "open", True, time.time())])
        await host.until(lambda: "DDATA" in story("plant:valve"))
        assert story("plant:valve")[0] == "DBIRTH"

        # Offline: DDEATH; online again: DBIRTH; gone: DDEATH.
        hub.set_online("plant/boiler", False)
        await host.until(lambda: story("plant:boiler")[-1:] == ["DDEATH"])
        hub.set_online("plant/boiler", True)
        await host.until(lambda: story("plant:boiler")[-1:] == ["DBIRTH"])
        hub.remove_device("plant/boiler")
        await host.until(lambda: story("plant:boiler")[-1:] == ["DDEATH"])
        assert story("plant:boiler") == ["DBIRTH", "DDEATH", "DBIRTH", "DDEATH"]

        # Data of a device that is not online (here: one the Hub does not know) is born, told, and dies again.
        hub.publish([Reading("other/meter", "kwh", 12.5, time.time() - 60)])
        await host.until(lambda: story("other:meter") == ["DBIRTH", "DDATA", "DDEATH"])
        birth = next(m for m in host.of("DBIRTH") if m.device == "other:meter")
        assert birth_types(birth) == {"kwh": DataType.DOUBLE}
        assert data_readings(host, "other:meter", aliases(birth))[0][1:2] == (12.5,)
        assert data_readings(host, "other:meter", aliases(birth))[0][3] is True  # older than its birth
        check_sequence(host)


async def test_a_row_larger_than_a_message_may_be_is_split(tmp_path: Path, hub: Hub, broker: Broker, running: Any) -> None:
    hub.add_device(BOILER)
    async with hosting(broker.port) as host:
        running(service(tmp_path, hub, broker.port, uplink={"max_message_bytes": 600}))
        await host.until(lambda: host.of("DBIRTH"))
        birth = host.of("DBIRTH")[0]
        now = time.time()
        hub.publish([Reading("plant/boiler", "starts", n, now + n / 1000) for n in range(200)])  # one row
        await host.until(lambda: len(data_readings(host, "plant:boiler", aliases(birth))) == 200)
        assert [value for _, value, _, _ in data_readings(host, "plant:boiler", aliases(birth))] == list(range(200))
        assert len(host.of("DDATA")) > 1
        assert all(m.payload.ByteSize() + 256 <= 600 for m in host.of("DDATA"))
        check_sequence(host)
