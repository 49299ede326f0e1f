"""A reload that changes the outbox or the uplink hands over without losing a reading."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from edged.config import load_config
from edged.daemon import Daemon
from tests.conftest import Watch
from tests.uplink.peers import free_port

CONFIG = """\
gateway: {{id: gw, state_dir: state}}
status: {{http: {{enabled: false}}}}
outbox: {{path: {path}}}
uplink: {{type: mqtt, host: 127.0.0.1, port: {port}}}
adapters:
  - type: simulated
    name: sim
    interval: 10ms
    devices:
      - {{id: meter, kind: energy_meter}}
"""


def stored_readings(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT total(count) FROM outbox WHERE kind = 0").fetchone()[0])


async def test_a_reload_that_moves_the_outbox_loses_no_reading(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: every reading stays in an outbox
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(path="first.sqlite", port=port))
    daemon = Daemon(load_config(config), config)
    watch = Watch(daemon.hub)
    task = asyncio.create_task(daemon.run())
    first = None
    try:
        async with asyncio.timeout(10):
            await daemon.ready.wait()
            first = daemon.uplink
            await first.wait_for(lambda: first.outbox.accepted > 100)
            config.write_text(CONFIG.format(path="second.sqlite", port=port))
            assert await daemon.reload()
            await watch.until(lambda: daemon.uplink is not first and daemon.uplink.outbox.accepted > 100)
            second = daemon.uplink
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 15)
    state = tmp_path / "state"
    assert first is not None and first.outbox.balance() == (0, 0) and second.outbox.balance() == (0, 0)
    # No broker, no bounds: every reading the Hub took is stored in one of the two files.
    assert stored_readings(state / "first.sqlite") + stored_readings(state / "second.sqlite") == daemon.hub.readings_in


TWO_UPLINKS = """\
gateway: {{id: gw, state_dir: state}}
status: {{http: {{enabled: false}}}}
uplinks:
  - {{type: mqtt, name: cloud, host: 127.0.0.1, port: {port}}}
  - {{type: mqtt, name: site, host: 127.0.0.1, port: {port}}}
adapters:
  - type: simulated
    name: sim
    interval: 10ms
    devices:
      - {{id: meter, kind: energy_meter}}
"""


async def test_a_reload_from_one_uplink_to_several_keeps_every_reading_for_the_first(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: every reading stays in the outbox
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(path="outbox.sqlite", port=port))
    daemon = Daemon(load_config(config), config)
    watch = Watch(daemon.hub)
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(10):
            await daemon.ready.wait()
            first = daemon.uplink
            await first.wait_for(lambda: first.outbox.accepted > 100)
            config.write_text(TWO_UPLINKS.format(port=port))
            assert await daemon.reload()
            await watch.until(lambda: daemon.uplink is not first and daemon.uplink.outbox.is_open)
            second = daemon.uplink
            site = second.outbox.lane("site")
            await second.wait_for(lambda: site.depth > 100)
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 15)
    assert list(second.services) == ["cloud", "site"]
    cloud = second.outbox.lane("cloud")
    assert cloud.depth == second.outbox.depth, "the first uplink took over what the one had"
    assert 0 < site.depth < cloud.depth, "the new one has what came after the reload"
    assert second.outbox.balance() == (0, 0)
    assert stored_readings(tmp_path / "state" / "outbox.sqlite") == daemon.hub.readings_in
