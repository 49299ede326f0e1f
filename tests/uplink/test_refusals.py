"""Delivery means the cloud took it: refusals, oversized messages and poison rows, against a real mosquitto."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.hub import Hub
from edged.model import Reading
from edged.uplink.service import UplinkService
from tests.uplink.peers import Broker, collecting
from tests.uplink.test_mqtt import batch, service


def balanced(uplink: UplinkService) -> bool:
    """Every reading handed to the outbox is in exactly one counter."""
    return uplink.outbox.balance() == (0, 0)


ACL_DENY_DATA = """\
topic readwrite edged/gw1/status
topic readwrite edged/gw1/status/#
topic readwrite edged/gw1/commands/#
topic readwrite edged/gw1/events/#
topic read edged/#
"""
ACL_ALLOW_ALL = "topic readwrite #\n"


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "acl-broker").mkdir()
    acl = tmp_path / "acl-broker" / "acl"
    acl.write_text(ACL_DENY_DATA)
    broker = Broker(tmp_path / "acl-broker", extra=[f"acl_file {acl}"])
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that takes no packet over 3000 bytes (MQTT 5 clients learn it from CONNACK)."""
    (tmp_path / "small-broker").mkdir()
    broker = Broker(tmp_path / "small-broker", extra=["max_packet_size 3000"])
    broker.start()
    yield broker
    broker.stop()


async def test_a_refused_publish_stays_in_the_outbox_is_counted_and_goes_once_the_broker_takes_it(
    tmp_path: Path, hub: Hub, acl_broker: Broker, running: object, caplog: pytest.LogCaptureFixture
) -> None:
    async with collecting(acl_broker.port, "edged/gw1/data/#") as cloud:
        uplink = service(tmp_path, hub, acl_broker.port, protocol=5)
        running(uplink)  # type: ignore[operator]
        await uplink.wait_for(lambda: uplink.connected, 10)
        hub.publish(batch("sim/a", 0, 50))
        await uplink.wait_for(lambda: sum(uplink.stats().refused.values()) >= 3, 20)
        stats = uplink.stats()
        assert "Not authorized (0x87)" in stats.refused
        assert (uplink.outbox.depth, uplink.outbox.acked) == (50, 0), "a refusal is not a delivery"
        assert caplog.text.count("refused a message on edged/gw1/data/sim/a") == 1, "logged once per topic"
        assert balanced(uplink)

        (acl_broker.workdir / "acl").write_text(ACL_ALLOW_ALL)
        assert acl_broker.proc is not None
        acl_broker.proc.send_signal(signal.SIGHUP)  # mosquitto reads its ACL again
        await cloud.until(lambda: cloud.count() >= 50)
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)
        assert [r[1] for _, r in cloud.readings["sim/a"]] == list(range(50))
        assert uplink.outbox.acked == 50 and balanced(uplink)


async def test_messages_larger_than_the_brokers_maximum_packet_are_split_in_parts(
    tmp_path: Path, hub: Hub, small_broker: Broker, running: object
) -> None:
    async with collecting(small_broker.port, "edged/gw1/data/#") as cloud:
        uplink = service(tmp_path, hub, small_broker.port, protocol=5)
        running(uplink)  # type: ignore[operator]
        await uplink.wait_for(lambda: uplink.connected, 10)
        hub.publish(batch("sim/a", 0, 600))  # one row of about 20 kB
        await cloud.until(lambda: cloud.count() >= 600)
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)
        assert [r[1] for _, r in cloud.readings["sim/a"]] == list(range(600))
        parts = [m for m in cloud.json if "readings" in m]
        assert len(parts) > 1 and all(len(payload) <= 3000 for _, payload in cloud.messages)
        assert [p["part"] for p in parts] == list(range(len(parts)))
        assert {(p["gen"], p["seq"], p["parts"]) for p in parts} == {(uplink.outbox.generation, parts[0]["seq"], len(parts))}
        assert uplink.outbox.dead_lettered == 0 and balanced(uplink)


async def test_a_message_the_broker_disconnects_for_goes_to_the_dead_letters_and_the_rest_flows_on(
    tmp_path: Path, hub: Hub, small_broker: Broker, running: object
) -> None:
    async with collecting(small_broker.port, "edged/gw1/data/#") as cloud:
        # MQTT 3.1.1 has no Maximum Packet Size: the broker just drops the connection.
        uplink = service(tmp_path, hub, small_broker.port, max_attempts=2)
        running(uplink)  # type: ignore[operator]
        await uplink.wait_for(lambda: uplink.connected, 10)
        hub.publish(batch("sim/big", 0, 600))
        hub.publish(batch("sim/small", 0, 5))
        await uplink.wait_for(lambda: uplink.outbox.dead_letters == 600, 30)
        hub.publish(batch("sim/small", 5, 5))
        await cloud.until(lambda: len(cloud.readings["sim/small"]) >= 10)
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)
        assert [r[1] for _, r in cloud.readings["sim/small"]] == list(range(10))
        assert "sim/big" not in cloud.readings
        assert balanced(uplink)

        (letter,) = await uplink.outbox.list_dead_letters()
        assert (letter.subject, letter.count, letter.kind) == ("sim/big", 600, "readings")
        assert "connection was lost" in letter.reason
        assert await uplink.outbox.discard([letter.id]) == 600
        assert (uplink.outbox.dead_letters, uplink.outbox.discarded) == (0, 600)
        assert balanced(uplink)


async def test_a_dead_letter_requeued_is_sent_again_once_the_broker_can_take_it(
    tmp_path: Path, hub: Hub, small_broker: Broker, running: object
) -> None:
    uplink = service(tmp_path, hub, small_broker.port, max_attempts=1)
    running(uplink)  # type: ignore[operator]
    await uplink.wait_for(lambda: uplink.connected, 10)
    hub.publish([Reading("sim/a", "text", "x" * 5000, 1_700_000_000.0)])
    await uplink.wait_for(lambda: uplink.outbox.dead_letters == 1, 30)

    small_broker.stop()
    small_broker.extra.clear()  # the operator raised the broker's limit
    small_broker.start()
    async with collecting(small_broker.port, "edged/gw1/data/#") as cloud:
        assert await uplink.outbox.requeue() == 1
        await cloud.until(lambda: cloud.count() >= 1)
        assert cloud.readings["sim/a"][0][1][1] == "x" * 5000
        await uplink.wait_for(lambda: uplink.outbox.depth == 0, 10)
        assert (uplink.outbox.dead_letters, uplink.outbox.requeued) == (0, 1) and balanced(uplink)
