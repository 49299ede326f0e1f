"""Adapters' own commands reach the running gateway through its status API:
``edged simulated outage`` and ``edged zigbee permit``/``remove``, end to end."""

from __future__ import annotations

import asyncio

from edged.cli import main
from tests.conftest import Watch
from tests.status.conftest import StartDaemon, http_url
from tests.status.test_http import ZIGBEE


async def edged(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_outage_takes_a_simulated_device_away_and_it_comes_back(start_daemon: StartDaemon, capsys) -> None:
    daemon = await start_daemon()
    hub, watch = daemon.hub, Watch(daemon.hub)
    await watch.until(lambda: hub.devices["sim/relay"].online)
    assert await edged("simulated", "outage", "sim/relay", "--seconds", "1", "--url", http_url(daemon)) == 0
    assert "sim/relay is away for 1 s" in capsys.readouterr().out
    assert not hub.devices["sim/relay"].online
    away = hub.value("sim/relay", "power")
    assert hub.devices["sim/thermostat"].online, "only that device is away"
    await watch.until(lambda: hub.devices["sim/relay"].online, timeout=5)
    await watch.until(lambda: hub.value("sim/relay", "power") is not away)


async def test_outage_of_an_unknown_device_exits_3_with_the_reason(start_daemon: StartDaemon, capsys) -> None:
    daemon = await start_daemon()
    assert await edged("simulated", "outage", "sim/boiler", "--url", http_url(daemon)) == 3
    assert "404: sim has no device 'sim/boiler'" in capsys.readouterr().err


async def test_zigbee_permit_and_remove_from_the_command_line(start_daemon: StartDaemon, capsys) -> None:
    daemon = await start_daemon(extra=ZIGBEE)
    plug = "zigbee/00:12:4b:00:00:00:00:03"
    watch = Watch(daemon.hub)
    await watch.until(lambda: plug in daemon.hub.devices and daemon.hub.devices[plug].online)
    url = http_url(daemon)
    assert await edged("zigbee", "permit", "--seconds", "30", "--url", url) == 0
    assert "joining permitted on zigbee for 30 s" in capsys.readouterr().out
    app = daemon.adapters["zigbee"].app  # type: ignore[attr-defined]
    assert app.permit_until > asyncio.get_running_loop().time() + 20
    assert await edged("zigbee", "remove", plug, "--url", url) == 0
    assert f"{plug} removed" in capsys.readouterr().out
    assert plug not in daemon.hub.devices
