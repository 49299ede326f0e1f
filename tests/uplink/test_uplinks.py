"""Several uplinks fed by one outbox, against real brokers: each delivers everything,
independently; one broker down never holds back the other's live data; nothing is
lost across a SIGKILL; a file of the single-uplink outbox opens with its rows."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import TypeAdapter

from edged.backoff import Backoff
from edged.config import load_config
from edged.errors import ConfigError
from edged.hub import Hub
from edged.model import Reading
from edged.outbox import OutboxConfig
from edged.status.views import status_json
from edged.uplink.config import UplinkConfig
from edged.uplink.uplinks import Uplinks
from edged.view import GatewayView
from tests.daemon_process import DaemonProcess, free_port
from tests.uplink.peers import Broker, Collector, collecting, recording_relay

INFLIGHT = 16
SINGLE_UPLINK_FILE = Path(__file__).parents[1] / "data" / "outbox-single-uplink.sqlite"  # see tests/test_outbox.py


@pytest.fixture
def brokers(tmp_path: Path) -> AsyncIterator[tuple[Broker, Broker]]:
    pair = []
    for name in ("cloud", "site"):
        (tmp_path / name).mkdir()
        pair.append(Broker(tmp_path / name))
        pair[-1].start()
    yield pair[0], pair[1]
    for broker in pair:
        broker.stop()


def uplinks(tmp_path: Path, hub: Hub, ports: dict[str, int], **outbox: Any) -> Uplinks:
    configs = {
        name: TypeAdapter(UplinkConfig).validate_python(
            {"type": "mqtt", "name": name, "host": "127.0.0.1", "port": port, "inflight": INFLIGHT, "connect_timeout": 1}
        )
        for name, port in ports.items()
    }
    return Uplinks.build(OutboxConfig.model_validate(outbox), configs, hub, tmp_path / "state", "gw1",
                         backoff=Backoff(initial=0.05, maximum=0.3))  # fmt: skip


def batch(device: str, start: int, n: int) -> list[Reading]:
    return [Reading(device, "count", i, 1_700_000_000.0 + i) for i in range(start, start + n)]


def distinct_values(cloud: Collector, device: str) -> set[Any]:
    return {reading[1] for _, reading in cloud.readings[device]}


def messages_by_key(cloud: Collector) -> Counter[tuple[int, int]]:
    """How often each message (by its key: generation and row id) arrived."""
    return Counter((data["gen"], data["seq"]) for data in cloud.json if "seq" in data)  # type: ignore[misc]


def readings_by_key(cloud: Collector) -> dict[tuple[int, int], int]:
    """Readings (an event counts as one) of each distinct message."""
    return {(data["gen"], data["seq"]): len(data.get("readings", [None])) for data in cloud.json if "seq" in data}  # type: ignore[misc, arg-type]


async def test_one_broker_down_holds_back_nothing_of_the_other_and_both_get_every_reading(
    tmp_path: Path, hub: Hub, brokers: tuple[Broker, Broker], running: Any
) -> None:
    cloud_broker, site_broker = brokers
    async with collecting(cloud_broker.port, "edged/gw1/#") as cloud, collecting(site_broker.port, "edged/gw1/#") as site:
        both = uplinks(tmp_path, hub, {"cloud": cloud_broker.port, "site": site_broker.port}, row_readings=50)
        running(both)
        await both.wait_for(lambda: both.connected, 10)
        to_cloud, to_site = both.services["cloud"], both.services["site"]
        produced = 0

        async def produce(n: int) -> None:
            nonlocal produced
            for _ in range(n // 50):
                hub.publish(batch("sim/a", produced, 50))
                produced += 50
                await asyncio.sleep(0.002)  # a poll interval

        await produce(1000)
        await cloud.until(lambda: len(distinct_values(cloud, "sim/a")) == 1000)
        await site.until(lambda: len(distinct_values(site, "sim/a")) == 1000)

        site_broker.stop()
        await to_site.wait_for(lambda: not to_site.connected, 10)
        down_from = produced
        async with asyncio.timeout(20):
            while produced < down_from + 5000:  # readings produced while the site is down
                await produce(500)
                # The cloud gets them now, not after the site is back.
                await cloud.until(lambda: len(distinct_values(cloud, "sim/a")) == produced)
        assert not to_site.connected, "the cloud got the live data while the site was down"
        assert to_site.lane.depth >= 5000 and to_cloud.lane.depth < 5000
        assert both.outbox.depth == to_site.lane.depth, "a reading is stored once, for the uplink that lacks it"
        document = status_json(GatewayView("gw1", hub, uplink=both))
        assert document["uplinks"]["cloud"]["connected"] is True and document["uplinks"]["site"]["connected"] is False
        assert "uplink" not in document, "the one-uplink key is for a gateway with one uplink"

        site_broker.start()
        await to_site.wait_for(lambda: to_site.connected, 20)
        await site.until(lambda: len(distinct_values(site, "sim/a")) == produced, 30)
        await both.wait_for(lambda: both.outbox.rows == 0, 10)

    everything = set(range(produced))
    assert distinct_values(cloud, "sim/a") == everything == distinct_values(site, "sim/a")
    assert max(messages_by_key(cloud).values()) == 1, "the cloud never got a message twice"
    twice = [key for key, times in messages_by_key(site).items() if times > 1]
    assert len(twice) <= INFLIGHT, "only what was in flight when the site went away came again"
    first_seen = list(dict.fromkeys(site.seqs["sim/a"]))
    assert first_seen == sorted(first_seen), "in order per device"
    assert both.outbox.balance() == (0, 0)
    assert [lane.balance() for lane in both.outbox.lanes] == [0, 0]
    assert to_cloud.lane.acked == to_site.lane.acked == produced == both.outbox.accepted
    assert to_site.stats().reconnects >= 1 and to_cloud.stats().reconnects == 0


async def test_a_command_result_goes_back_to_the_uplink_the_command_came_from(
    tmp_path: Path, hub: Hub, brokers: tuple[Broker, Broker], running: Any
) -> None:
    cloud_broker, site_broker = brokers
    writes = recording_relay(hub)
    async with collecting(cloud_broker.port, "edged/gw1/commands/result") as cloud, \
            collecting(site_broker.port, "edged/gw1/commands/result") as site:  # fmt: skip
        both = uplinks(tmp_path, hub, {"cloud": cloud_broker.port, "site": site_broker.port})
        running(both)
        await both.wait_for(lambda: both.connected, 10)
        async with aiomqtt.Client("127.0.0.1", site_broker.port) as client:
            await client.publish("edged/gw1/commands", json.dumps({"id": "c1", "device": "sim/relay", "point": "on",
                                                                   "value": True}), qos=1)  # fmt: skip
        await site.until(lambda: any(d.get("id") == "c1" and d.get("status") == "ok" for d in site.json))
        hub.publish([Reading("sim/a", "count", 1, 1.0)])  # committed after the result
        await both.wait_for(lambda: both.outbox.rows == 0, 10)
    assert [w.value for w in writes] == [True]
    assert not any(d.get("id") == "c1" for d in cloud.json), "the other cloud did not send it"


async def test_a_file_of_the_single_uplink_outbox_is_delivered_by_its_first_uplink(
    tmp_path: Path, hub: Hub, brokers: tuple[Broker, Broker], running: Any
) -> None:
    cloud_broker, site_broker = brokers
    (tmp_path / "state").mkdir()
    shutil.copy(SINGLE_UPLINK_FILE, tmp_path / "state" / "outbox.sqlite")
    async with collecting(cloud_broker.port, "edged/gw1/#") as cloud, collecting(site_broker.port, "edged/gw1/#") as site:
        both = uplinks(tmp_path, hub, {"cloud": cloud_broker.port, "site": site_broker.port})
        running(both)
        await both.wait_for(lambda: both.connected, 10)
        hub.publish(batch("sim/new", 0, 10))
        await cloud.until(lambda: len(distinct_values(cloud, "sim/new")) == 10)
        await site.until(lambda: len(distinct_values(site, "sim/new")) == 10)
        await both.wait_for(lambda: both.outbox.rows == 0, 10)

    old = {key: n for key, n in readings_by_key(cloud).items() if key[0] == 1}
    assert sum(old.values()) == 751, "every reading (750, and the event) the old file still had to send"
    # Its first four rows (d0 and d1 0-99) were acknowledged, its fifth (d0 100-149) dead-lettered.
    assert distinct_values(cloud, "old/d0") == set(range(150, 500)) and distinct_values(cloud, "old/d1") == set(range(100, 500))
    assert not any(key[0] == 1 for key in readings_by_key(site)), "the uplink added later gets what comes after"
    lanes = {lane.name: lane for lane in both.outbox.lanes}
    assert (lanes["cloud"].acked, lanes["cloud"].dead_letters, lanes["site"].acked) == (200 + 751 + 10, 50, 10)
    assert both.outbox.balance() == (0, 0)


async def test_a_sigkilled_gateway_delivers_every_accepted_reading_to_both_brokers_after_a_restart(
    tmp_path: Path, brokers: tuple[Broker, Broker]
) -> None:
    cloud_broker, site_broker = brokers
    config = tmp_path / "config.yaml"
    template = """\
gateway: {{id: gw, state_dir: {state}}}
status: {{http: {{enabled: false}}}}
uplinks:
  - {{type: mqtt, name: cloud, host: 127.0.0.1, port: {cloud}, connect_timeout: 1s}}
  - {{type: mqtt, name: site, host: 127.0.0.1, port: {site}, connect_timeout: 1s}}
{adapters}"""
    adapters = """\
adapters:
  - type: simulated
    name: sim
    interval: 10ms
    devices: [{id: meter, kind: energy_meter}]
"""
    settings = {"state": tmp_path / "state", "cloud": cloud_broker.port, "site": site_broker.port}
    async with collecting(cloud_broker.port, "edged/gw/#") as cloud, collecting(site_broker.port, "edged/gw/#") as site:
        config.write_text(template.format(**settings, adapters=adapters))
        async with running_daemon(config) as gateway:
            await cloud.until(lambda: cloud.count() > 200)
            await site.until(lambda: site.count() > 200)
            site_broker.stop()  # killed while one broker is away
            seen = cloud.count()
            await cloud.until(lambda: cloud.count() > seen + 500)
            gateway.signal(signal.SIGKILL)
            await gateway.wait_exit()
        site_broker.start()

        config.write_text(template.format(**settings, adapters=""))  # the same outbox, nothing new coming
        async with running_daemon(config) as gateway:
            accepted = stored_counter(tmp_path / "state" / "outbox.sqlite", "accepted")
            await cloud.until(lambda: sum(readings_by_key(cloud).values()) == accepted, 30)
            await site.until(lambda: sum(readings_by_key(site).values()) == accepted, 30)
            gateway.signal(signal.SIGTERM)
            assert await gateway.wait_exit() == 0

    assert readings_by_key(cloud) == readings_by_key(site), "each broker got every message, at least once"
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite") as db:
        assert db.execute("SELECT count(*) FROM outbox").fetchone() == (0,)


@asynccontextmanager
async def running_daemon(config: Path) -> AsyncIterator[DaemonProcess]:
    gateway = DaemonProcess(config, free_port())
    await gateway.start()
    try:
        await gateway.wait_notification("READY=1", 20)
        yield gateway
    finally:
        await gateway.close()


def stored_counter(path: Path, name: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])


BOTH = "gateway: {id: gw}\nuplink: {type: mqtt, host: a}\nuplinks:\n  - {type: coap, uri: 'coaps://h/r', identity: i, psk: k}\n"
TWINS = "gateway: {id: gw}\nuplinks:\n  - {type: mqtt, name: x, host: a}\n  - {type: mqtt, name: x, host: b}\n"
EMPTY = "gateway: {id: gw}\nuplinks: []\n"
UNNAMED = "gateway: {id: gw}\nuplinks:\n  - {type: mqtt, host: a}\n  - {type: mqtt, host: b}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BOTH, "config.yaml:3: uplinks: give either uplink: (one uplink) or uplinks: (a list of them), not both"),
        (TWINS, "config.yaml:2: uplinks: two uplinks share the name 'x'; give each a distinct name"),
        (EMPTY, "config.yaml:2: uplinks: expected a list of at least one uplink (or leave uplinks: out)"),
        (UNNAMED, "config.yaml:2: uplinks: uplinks[0]: there are 2 uplinks of type mqtt; give each a name"),
    ],
)
async def test_uplinks_that_cannot_be_told_apart_are_a_config_error_with_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert expected in str(raised.value).replace(str(tmp_path) + "/", "")
    checker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged", "check-config", str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await checker.communicate()
    assert checker.returncode == 2 and expected in errors.decode().replace(str(tmp_path) + "/", "")


def test_an_uplink_of_uplinks_is_named_by_its_type_when_it_is_the_only_one_of_that_type(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("gateway: {id: gw}\nuplinks:\n  - {type: mqtt, host: a}\n"
                      "  - {type: coap, uri: 'coaps://h/r', identity: i, psk: k}\n"
                      "  - {type: coap, name: backup, uri: 'coaps://h2/r', identity: i, psk: k}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="there are 2 uplinks of type coap; give each a name"):
        load_config(config)
    config.write_text(config.read_text().replace("{type: coap, uri", "{type: coap, name: main, uri"))
    assert list(load_config(config).uplinks_by_name()) == ["mqtt", "main", "backup"]
    config.write_text("gateway: {id: gw}\nuplink: {type: mqtt, host: a}\n")
    assert list(load_config(config).uplinks_by_name()) == ["uplink"], "the one uplink keeps the name it has always had"
