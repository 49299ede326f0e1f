"""MQTT uplink against a real mosquitto: delivery, topics, TLS, birth and will, commands, broker outages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import TypeAdapter

from edged.backoff import Backoff
from edged.hub import Hub
from edged.model import Command, Device, Point, Reading, ValueType
from edged.outbox import OutboxConfig
from edged.uplink.config import UplinkConfig
from edged.uplink.service import UplinkService
from edged.uplink.uplinks import single
from tests.uplink.peers import Broker, collecting, recording_relay


def service(tmp_path: Path, hub: Hub, port: int, outbox: dict[str, Any] | None = None, **uplink: Any) -> UplinkService:
    config = TypeAdapter(UplinkConfig).validate_python({"type": "mqtt", "host": "127.0.0.1", "port": port, **uplink})
    return single(
        OutboxConfig.model_validate(outbox or {}), config, hub, tmp_path / "state", "gw1",
        backoff=Backoff(initial=0.05, maximum=0.5),
    )


def batch(device: str, start: int, n: int) -> list[Reading]:
    return [Reading(device, "count", i, 1_700_000_000.0 + i) for i in range(start, start + n)]


def values(readings: list[tuple[int, list[Any]]]) -> list[Any]:
    return [r[1] for _, r in readings]


async def test_readings_arrive_once_per_device_batch_in_order_and_leave_the_outbox(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    async with collecting(broker.port, "edged/gw1/data/#") as cloud:
        uplink = service(tmp_path, hub, broker.port)
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)
        for start in range(0, 3000, 100):
            hub.publish(batch("sim/a", start, 100) + batch("sim/b", start, 100))
            await asyncio.sleep(0)
        await cloud.until(lambda: cloud.count() >= 6000)
        for device in ("sim/a", "sim/b"):
            assert values(cloud.readings[device]) == list(range(3000))
            seqs = cloud.seqs[device]
            assert seqs == sorted(set(seqs)), "one message per row, in row order"
        assert {topic for topic, _ in cloud.messages} == {"edged/gw1/data/sim/a", "edged/gw1/data/sim/b"}
        first = cloud.json[0]
        assert first["gateway"] == "gw1"
        assert first["readings"][0] == ["count", 0, 1_700_000_000.0, 0]
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)
        stats = uplink.stats()
        assert (uplink.outbox.accepted, stats.acked, stats.connected) == (6000, 6000, True)
        assert uplink.delivered == {"sim": 6000}


async def test_point_template_sends_one_message_per_reading_over_mqtt5(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    async with collecting(broker.port, "site/#") as cloud:
        uplink = service(tmp_path, hub, broker.port, protocol=5, prefix="site", topic="{prefix}/{device}/{point}")
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)
        hub.publish([Reading("sim/t", "temperature", 21.5, 1.0), Reading("sim/t", "humidity", 40, 1.0)])
        await cloud.until(lambda: len([t for t, _ in cloud.messages if "/sim/t/" in t]) == 2)
        got = {t: json.loads(p) for t, p in cloud.messages if "/sim/t/" in t}
        assert got["site/sim/t/temperature"]["value"] == 21.5
        assert got["site/sim/t/humidity"]["value"] == 40
        assert got["site/sim/t/humidity"]["seq"] == got["site/sim/t/temperature"]["seq"]


async def test_birth_is_retained_online_and_a_clean_stop_leaves_offline(
    tmp_path: Path, hub: Hub, broker: Broker
) -> None:
    uplink = service(tmp_path, hub, broker.port)
    task = asyncio.create_task(uplink.run())
    await uplink.wait_for(lambda: uplink.connected, 10)
    async with collecting(broker.port, "edged/gw1/status", "late-1") as cloud:
        await cloud.until(lambda: cloud.messages)
        assert cloud.messages == [("edged/gw1/status", b"online")]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with collecting(broker.port, "edged/gw1/status", "late-2") as cloud:
        await cloud.until(lambda: cloud.messages)
        assert cloud.messages == [("edged/gw1/status", b"offline")]


async def test_tls_with_client_certificate_delivers_and_a_stranger_is_refused(
    tmp_path: Path, hub: Hub, tls_broker: Broker, certs: dict[str, Path], running: Any
) -> None:
    stranger = service(
        tmp_path / "stranger", hub, tls_broker.port,
        tls={"ca": certs["ca"], "cert": certs["stranger_cert"], "key": certs["stranger_key"]},
        connect_timeout=0.5,  # the broker's refusal shows up as no CONNACK
    )
    running(stranger)
    trusted = service(
        tmp_path / "trusted", hub, tls_broker.port,
        tls={"ca": certs["ca"], "cert": certs["client_cert"], "key": certs["client_key"]},
        client_id="trusted",
    )
    running(trusted)
    await trusted.wait_for(lambda: trusted.connected, 10)
    hub.publish(batch("sim/a", 0, 10))
    await trusted.wait_for(lambda: trusted.stats().acked == 10, 10)
    await stranger.wait_for(lambda: stranger.reconnects >= 2, 10)
    assert not stranger.connected
    assert stranger.outbox.depth == 10, "what cannot be sent stays in the outbox"


async def test_username_and_password_from_a_file_are_required_and_used(
    tmp_path: Path, hub: Hub, running: Any
) -> None:
    (tmp_path / "auth-broker").mkdir()
    broker = Broker(tmp_path / "auth-broker", users={"gw1": "right horse"})
    broker.start()
    try:
        (tmp_path / "password").write_text("right horse\n")
        (tmp_path / "wrong").write_text("wrong horse\n")
        good = service(tmp_path / "good", hub, broker.port, username="gw1", password={"file": str(tmp_path / "password")})
        bad = service(tmp_path / "bad", hub, broker.port, username="gw1", password={"file": str(tmp_path / "wrong")},
                      client_id="bad")
        running(good)
        running(bad)
        await good.wait_for(lambda: good.connected, 10)
        await bad.wait_for(lambda: bad.reconnects >= 2, 10)
        assert not bad.connected
    finally:
        broker.stop()


async def cloud_command(port: int, payload: str | bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish("edged/gw1/commands", payload, qos=1)


async def test_cloud_commands_are_executed_held_for_offline_devices_or_rejected_with_a_reason(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    points = {"on": Point("on", ValueType.BOOL, writable=True), "power": Point("power", ValueType.FLOAT)}
    hub.add_device(Device("sim/relay", "sim", points=dict(points), online=True))
    hub.add_device(Device("sim/away", "sim", points=dict(points), online=False))
    writes: list[Command] = []

    async def write(command: Command) -> None:
        writes.append(command)

    hub.attach_writer("sim", write)
    async with collecting(broker.port, "edged/gw1/commands/result") as cloud:
        uplink = service(tmp_path, hub, broker.port)
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)

        def result(id_: str) -> dict[str, Any] | None:
            return next((m for m in cloud.json if m.get("id") == id_), None)

        await cloud_command(broker.port, json.dumps({"id": "c1", "device": "sim/relay", "point": "on", "value": "on"}))
        await cloud.until(lambda: result("c1"))
        assert result("c1")["status"] == "ok"  # type: ignore[index]
        assert [(c.device_id, c.key, c.value, c.origin) for c in writes] == [("sim/relay", "on", True, "cloud")]

        bad = {
            "c2": {"device": "sim/nothing", "point": "on", "value": True},
            "c3": {"device": "sim/relay", "point": "power", "value": 5},
            "c4": {"device": "sim/relay", "point": "on", "value": "maybe"},
            "c5": {"device": "sim/relay", "point": "on"},
        }
        for id_, body in bad.items():
            await cloud_command(broker.port, json.dumps({"id": id_, **body}))
        await cloud_command(broker.port, b"{not json")
        await cloud.until(lambda: all(result(i) for i in bad) and any(m.get("id") is None for m in cloud.json))
        reasons = {i: result(i)["reason"] for i in bad}  # type: ignore[index]
        assert all(result(i)["status"] == "rejected" for i in bad)  # type: ignore[index]
        assert "unknown device" in reasons["c2"]
        assert "read-only" in reasons["c3"]
        assert "expected bool" in reasons["c4"]
        assert "missing value" in reasons["c5"]
        assert "bad JSON" in next(m for m in cloud.json if m.get("id") is None)["reason"]
        assert len(writes) == 1, "nothing rejected reached the device"

        await cloud_command(broker.port, json.dumps({"id": "c6", "device": "sim/away", "point": "on", "value": False}))
        await cloud.until(lambda: result("c6"))
        assert result("c6")["status"] == "pending"  # type: ignore[index]
        hub.set_online("sim/away", True)
        await cloud.until(lambda: len([m for m in cloud.json if m.get("id") == "c6"]) == 2)
        assert cloud.json[-1]["status"] == "ok"
        assert writes[-1].device_id == "sim/away"
        assert writes[-1].value is False
        assert uplink.connected, "bad commands never break the connection"


async def test_broker_outage_loses_nothing_and_fresh_readings_overtake_the_backlog(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    async with collecting(broker.port, "edged/gw1/data/#") as cloud:
        uplink = service(tmp_path, hub, broker.port, outbox={"row_readings": 100}, backfill_rate=2000)
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)
        hub.publish(batch("sim/a", 0, 100))
        await cloud.until(lambda: cloud.count() == 100)

        broker.stop()
        await uplink.wait_for(lambda: not uplink.connected, 10)
        for start in range(100, 5100, 100):  # 5,000 readings while the broker is away
            hub.publish(batch("sim/a", start, 100))
        await uplink.wait_for(lambda: uplink.outbox.accepted == 5100, 10)

        broker.start()
        await uplink.wait_for(lambda: uplink.connected, 20)
        hub.publish(batch("sim/live", 0, 10))
        await cloud.until(lambda: len(cloud.readings["sim/live"]) == 10)
        assert cloud.count() - 10 < 5100, "the fresh reading went out before the backlog had drained"

        await cloud.until(lambda: len({v for v in values(cloud.readings["sim/a"])}) == 5100)
        # At least once, and in order per device: the first time each message id is seen, it is a new maximum.
        seqs = cloud.seqs["sim/a"]
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen)
        unique = [r for _, r in dict(((s, r[1]), r) for s, r in cloud.readings["sim/a"]).items()]
        assert [r[1] for r in unique] == list(range(5100))
        assert uplink.reconnects >= 1
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)


async def test_health_reports_a_long_outage_and_a_nearly_full_outbox(
    tmp_path: Path, hub: Hub, running: Any, monkeypatch: Any
) -> None:
    from edged.uplink import service as service_module
    from tests.uplink.peers import free_port

    monkeypatch.setattr(service_module, "HEALTH_DOWN", 0.0)
    uplink = service(tmp_path, hub, free_port(), outbox={"max_bytes": 3000})  # nothing listens there
    running(uplink)
    await uplink.wait_for(lambda: uplink.reconnects >= 1, 10)
    assert uplink.health_problems()[0].startswith("uplink down for")
    hub.publish(batch("sim/a", 0, 100))
    await uplink.wait_for(lambda: uplink.outbox.accepted == 100, 10)
    assert any(p.startswith("outbox is") and p.endswith("% full") for p in uplink.outbox.health_problems())


async def test_cancelling_the_service_commits_every_reading_handed_over(tmp_path: Path, hub: Hub) -> None:
    from edged.outbox import Outbox
    from tests.uplink.peers import free_port

    uplink = service(tmp_path, hub, free_port())
    task = asyncio.create_task(uplink.run())
    await uplink.wait_for(lambda: uplink.outbox.is_open, 10)
    for start in range(0, 5000, 100):
        hub.publish(batch("sim/a", start, 100))  # all still in memory when the stop comes
    task.cancel()  # what the daemon does on SIGTERM
    await asyncio.gather(task, return_exceptions=True)
    outbox = Outbox(OutboxConfig(), tmp_path / "state")
    await outbox.open()
    assert outbox.depth == 5000
    await outbox.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_with_a_persistent_session_commands_sent_while_offline_arrive_after_reconnect(
    tmp_path: Path, hub: Hub, broker: Broker, protocol: str
) -> None:
    writes = recording_relay(hub)
    async with collecting(broker.port, "edged/gw1/commands/result") as cloud:
        first = service(tmp_path, hub, broker.port, clean_session=False, protocol=protocol)
        task = asyncio.create_task(first.run())
        await first.wait_for(lambda: first.connected, 10)
        await cloud_command(broker.port, json.dumps({"id": "a", "device": "sim/relay", "point": "on", "value": True}))
        await cloud.until(lambda: any(m.get("id") == "a" for m in cloud.json))  # so it is subscribed
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        # Nobody is connected to take this one now; the broker keeps it for the gateway's session.
        await cloud_command(broker.port, json.dumps({"id": "b", "device": "sim/relay", "point": "on", "value": False}))
        second = service(tmp_path, hub, broker.port, clean_session=False, protocol=protocol)
        task = asyncio.create_task(second.run())
        try:
            await cloud.until(lambda: any(m.get("id") == "b" for m in cloud.json))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert [c.value for c in writes] == [True, False]


async def test_messages_stored_before_the_clock_is_synchronised_say_so(
    tmp_path: Path, hub: Hub, broker: Broker, running: Any
) -> None:
    async with collecting(broker.port, "edged/gw1/#") as cloud:
        uplink = service(tmp_path, hub, broker.port)
        running(uplink)
        await uplink.wait_for(lambda: uplink.connected, 10)
        uplink.outbox.clock_synced = False  # booted without a time server yet
        hub.publish(batch("sim/a", 0, 5))
        uplink.outbox.put_event("rule", {"rule": "r1", "ts": 5.0})
        await uplink.outbox.flush()
        uplink.outbox.clock_synced = True  # the time client synchronised the clock
        hub.publish(batch("sim/a", 5, 5))
        await cloud.until(lambda: cloud.count() >= 10 and any(m.get("rule") == "r1" for m in cloud.json))
        marks = [(m.get("clock"), [r[1] for r in m["readings"]]) for m in cloud.json if "readings" in m]
        assert marks == [("unsynced", [0, 1, 2, 3, 4]), (None, [5, 6, 7, 8, 9])]
        (event,) = [m for m in cloud.json if m.get("rule") == "r1"]
        assert event["clock"] == "unsynced" and event["ts"] == 5.0
