"""The status page in a real browser (Debian's headless chromium, driven
over the DevTools protocol): devices with their points under them and a
sparkline each, a value changed on the device shows up without reloading,
the page's controls write to the device, the uplink panel and the Zigbee
map, at a desktop's and a phone's width. The screenshots are written to
the test's own folder, or with ``EDGED_SCREENSHOTS=docs/images`` (``make
screenshots``) to the documentation's."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edged.model import Command, Reading
from tests.status.conftest import StartDaemon, http_url
from tests.uplink.peers import Broker, free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMAGES = os.environ.get("EDGED_SCREENSHOTS")  # where the screenshots go; the test's folder when unset
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")


class Page:
    """A tab of headless chromium, spoken to over the Chrome DevTools Protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._id = 0
        self.events: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        async for message in self.ws:
            data = json.loads(message.data)
            if "method" in data:
                self.events.append(data["method"])
            if data.get("id") == self._id:
                if "error" in data:
                    raise AssertionError(data["error"])
                return data["result"]
        raise AssertionError("browser closed the connection")

    async def open(self, url: str) -> None:
        """Navigate to ``url`` and return once its load event has fired."""
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)
        async for message in self.ws:
            if "Page.loadEventFired" in self.events:
                return
            if json.loads(message.data).get("method") == "Page.loadEventFired":
                return
        raise AssertionError("browser closed the connection")

    async def evaluate(self, expression: str) -> Any:
        """Run ``expression`` in the page, awaiting it if it is a promise."""
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(result["exceptionDetails"])
        return result["result"].get("value")

    async def wait_for(self, body: str) -> Any:
        """The first truthy value of the JavaScript ``body``, looked at again whenever the page changes."""
        return await self.evaluate(WAIT_FOR.format(body=body))

    async def resize(self, width: int, height: int, mobile: bool = False) -> None:
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    async def screenshot(self, path: Path, most: int = 2400) -> None:
        """The page from its top, as tall as it is up to ``most`` pixels, as a PNG."""
        height = min(most, await self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        width = await self.evaluate("window.innerWidth")
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1})  # fmt: skip
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextlib.asynccontextmanager
async def browser(url: str, profile: Path) -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while b"DevTools listening on ws://" not in (line := await proc.stderr.readline()):
                assert line, "chromium exited before opening its DevTools port"
        devtools = line.decode().split("ws://", 1)[1].split("/", 1)[0]
        drain = asyncio.create_task(proc.stderr.read())  # keep the pipe from filling up
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{devtools}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tab = Page(ws)
                async with asyncio.timeout(30):
                    await tab.open(url)
                yield tab
        drain.cancel()
    finally:
        proc.kill()
        await proc.wait()


# Resolves once ``check()`` returns something truthy, looking again whenever the DOM changes.
WAIT_FOR = """new Promise((resolve) => {{
  const check = () => {{ {body} }};
  const found = check();
  if (found) return resolve(found);
  new MutationObserver((_, observer) => {{
    const value = check();
    if (value) {{ observer.disconnect(); resolve(value); }}
  }}).observe(document.documentElement, {{subtree: true, childList: true, characterData: true}});
}})"""


def point(device: str, key: str, part: str = ".value") -> str:
    """The JavaScript for a part of a point's row (its value, control, sparkline) on the page."""
    return f"document.querySelector('.point[data-device=\"{device}\"][data-point=\"{key}\"] {part}')"


def text(device: str, key: str) -> str:
    return f"{point(device, key)}?.textContent"


async def test_page_shows_devices_with_their_points_and_live_values(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await start_daemon(interval="200ms")
    async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
        async with asyncio.timeout(30):
            adapters = await page.wait_for(
                "const t = document.querySelector('#adapters tbody')?.textContent; return t && t.includes('running') && t;"
            )
            assert "sim" in adapters and "simulated" in adapters
            setpoint = await page.wait_for(f"return {text('sim/thermostat', 'setpoint')};")
            assert setpoint == "21 Cel"
            title = await page.evaluate("document.querySelector('.device[data-device=\"sim/thermostat\"] h3').textContent")
            assert title == "Living room (sim/thermostat)"
            keys = await page.evaluate(
                "[...document.querySelectorAll('.device[data-device=\"sim/thermostat\"] .point .key')].map(k => k.textContent)"
            )
            assert sorted(keys) == ["heating", "setpoint", "temperature"], "the device's points are under it"

            result = await daemon.hub.execute(Command("sim/thermostat", "setpoint", 23.5))
            assert result.ok
            # The page polls the API; the new value appears in place, with no reload.
            await page.evaluate("window.notReloaded = true")
            updated = await page.wait_for(f"const v = {text('sim/thermostat', 'setpoint')}; return v === '23.5 Cel' && v;")
            assert updated == "23.5 Cel"
            assert await page.evaluate("window.notReloaded") is True
            commands = await page.wait_for(
                "const t = document.querySelector('#commands tbody')?.textContent; return t && t.includes('23.5') && t;"
            )
            assert "sim/thermostat.setpoint" in commands and "ok" in commands

            await page.evaluate("const f = document.getElementById('filter'); f.value = 'relay';"
                                "f.dispatchEvent(new Event('input'));")  # fmt: skip
            shown = await page.evaluate("[...document.querySelectorAll('.device')].filter(d => !d.hidden).map(d => d.dataset.device)")
            assert shown == ["sim/relay"]


async def test_the_page_controls_write_to_the_device(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await start_daemon("  http: {host: 127.0.0.1, port: 0, token: page-token}", interval="200ms")
    async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
        async with asyncio.timeout(30):
            await page.wait_for("return !document.getElementById('login').hidden;")
            await page.evaluate("document.getElementById('token').value = 'page-token';"
                                "document.querySelector('#login button').click();")  # fmt: skip
            await page.wait_for(f"return {point('sim/relay', 'relay', 'input.switch')};")
            assert await page.evaluate(f"{point('sim/relay', 'relay', 'input.switch')}.checked") is False

            await page.evaluate(f"{point('sim/relay', 'relay', 'input.switch')}.click()")
            answer = await page.wait_for(f"const r = {point('sim/relay', 'relay', '.result')}.textContent; return r !== 'sending…' && r;")
            assert answer == "ok"
            relay = daemon.hub.value("sim/relay", "relay")
            assert relay is not None and relay.value is True
            # The simulated relay's load draws power only once it is on: the device itself took the write.
            power = await page.wait_for(f"const v = {text('sim/relay', 'power')}; return v && v !== '0 W' && v;")
            assert float(power.split()[0]) > 0

            await page.evaluate(f"{point('sim/thermostat', 'setpoint', 'input')}.value = '24.5';"
                                f"{point('sim/thermostat', 'setpoint', 'button')}.click();")  # fmt: skip
            answer = await page.wait_for(
                f"const r = {point('sim/thermostat', 'setpoint', '.result')}.textContent; return r !== 'sending…' && r;"
            )
            assert answer == "ok"
            setpoint = daemon.hub.value("sim/thermostat", "setpoint")
            assert setpoint is not None and setpoint.value == 24.5

            await page.evaluate(f"{point('sim/thermostat', 'setpoint', 'input')}.value = '99';"
                                f"{point('sim/thermostat', 'setpoint', 'button')}.click();")  # fmt: skip
            refused = await page.wait_for(
                f"const r = {point('sim/thermostat', 'setpoint', '.result')}; return r.textContent !== 'sending…' && r.className;"
            )
            reason = await page.evaluate(f"{point('sim/thermostat', 'setpoint', '.result')}.textContent")
            assert "bad" in refused and reason == "failed: setpoint must be between 5 and 30 Cel", reason
            assert await page.evaluate("sessionStorage.getItem('edged-token')") == "page-token"
            assert await page.evaluate("localStorage.getItem('edged-token')") is None


async def test_page_asks_for_the_token_when_the_api_needs_one(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await start_daemon("  http: {host: 127.0.0.1, port: 0, token: page-token}", interval="200ms")
    async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
        async with asyncio.timeout(30):
            await page.wait_for("return !document.getElementById('login').hidden;")
            assert await page.evaluate("document.querySelectorAll('#devices .device').length") == 0
            await page.evaluate(
                "document.getElementById('token').value = 'page-token';"
                "document.querySelector('#login button').click();"
            )
            value = await page.wait_for(f"return {text('sim/relay', 'relay')};")
            assert value == "false"


async def test_page_says_why_a_device_and_its_adapter_fail(start_daemon: StartDaemon, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    extra = f"""  - type: modbus
    name: mb
    connections:
      - {{transport: tcp, host: 127.0.0.1, port: {port}, timeout: 0.2,
          devices: [{{id: meter, unit_id: 1, interval: 0.1, points: [{{key: power, address: 0}}]}}]}}
"""
    daemon = await start_daemon(interval="200ms", extra=extra)
    async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
        async with asyncio.timeout(30):
            row = "document.querySelector('#problems tr[data-device=\"mb/meter\"]')"
            problem = await page.wait_for(f"return {row}?.cells[3]?.textContent;")
            assert problem.startswith(f"tcp://127.0.0.1:{port} is not connected ("), problem
            assert await page.evaluate(f"{row}.cells[2].textContent") == "never"
            assert await page.evaluate("document.getElementById('problems-section').hidden") is False
            card = await page.wait_for("return document.querySelector('.device[data-device=\"mb/meter\"] .problem')?.textContent;")
            assert card == problem
            adapters = await page.wait_for(
                "const t = document.querySelector('#adapters tbody')?.textContent; return t && t.includes('cannot connect') && t;"
            )
            assert f"cannot connect to tcp://127.0.0.1:{port}" in adapters
            assert "sim/thermostat" not in await page.evaluate("document.querySelector('#problems').textContent")


def the_hour_before(now: float) -> list[Reading]:
    """What the simulated thermostat and meter reported over the last hour, one reading per 30 s."""
    readings = []
    for step in range(120, 0, -1):
        ts = now - 30 * step
        phase = step / 120
        readings.append(Reading("sim/thermostat", "temperature", 19.0 + 2.5 * (1 - phase) ** 0.5, ts))
        readings.append(Reading("sim/meter", "power", 800 + 600 * ((step // 20) % 2) + 40 * ((step * 7) % 5), ts))
        readings.append(Reading("sim/meter", "voltage", 230 + 2 * ((step * 3) % 4 - 1.5), ts))
    return readings


async def test_page_at_desktop_and_phone_width_with_uplink_and_zigbee_map(start_daemon: StartDaemon, tmp_path: Path) -> None:
    images = Path(IMAGES) if IMAGES else tmp_path / "images"
    broker = Broker(tmp_path / "broker")
    broker.workdir.mkdir()
    broker.start()
    try:
        extra = f"""      - {{id: meter, kind: energy_meter, name: Main meter}}
  - type: zigbee
    name: zigbee
    radio: simulated
    permit_join: {{on_start: 60}}
    simulated:
      devices:
        - {{kind: lamp, ieee: "00:0d:6f:00:0e:d9:ed:02", name: Hall lamp, lqi: 40}}
        - {{kind: plug, ieee: "00:0d:6f:00:0e:d9:ed:03", name: Desk plug}}
        - {{kind: climate, ieee: "00:0d:6f:00:0e:d9:ed:04", name: Bedroom}}
uplink: {{type: mqtt, host: 127.0.0.1, port: {broker.port}}}
"""
        daemon = await start_daemon(interval="500ms", extra=extra)
        assert daemon.status is not None
        daemon.status.history.record(the_hour_before(daemon.hub.clock()))
        with daemon.hub.device_changes() as changes:
            async with asyncio.timeout(60):
                while not [d for d in daemon.hub.adapter_devices("zigbee") if d.online]:
                    await changes.get()  # the simulated network forms and its devices join
        url = http_url(daemon) + "/api/adapters/zigbee/map/scan"
        async with aiohttp.ClientSession() as session, session.post(url, json={}) as response:
            assert response.status == 200, await response.text()
            scanned = await response.json()
        assert scanned["nodes"] and scanned["links"]

        async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
            async with asyncio.timeout(60):
                await page.resize(1280, 900)
                samples = await page.wait_for(
                    f"const n = Number({point('sim/thermostat', 'temperature', '.spark')}?.dataset.samples); return n > 100 && n;"
                )
                assert samples >= 120, "an hour of one value per 30 s, and the value now"
                await page.wait_for(f"return {point('sim/meter', 'power', '.spark')}?.dataset.samples > 100;")
                uplink = "document.querySelector('#uplinks .uplink')"
                await page.wait_for(f"return {uplink}?.querySelector('.state').textContent === 'connected';")
                assert await page.evaluate(f"{uplink}.querySelector('.meta').textContent") == "mqtt"
                assert await page.wait_for("return Number(document.getElementById('outbox-chart').dataset.samples) >= 1;")
                nodes = await page.wait_for("return document.querySelectorAll('#maps .node').length;")
                assert nodes == len(scanned["nodes"])
                pairs: dict[frozenset[str], bool] = {}
                for link in scanned["links"]:
                    ends = frozenset((link["source"], link["target"]))
                    pairs[ends] = pairs.get(ends, False) or link["weak"]
                lines = await page.evaluate("document.querySelectorAll('#maps .link').length")
                weak = await page.evaluate("document.querySelectorAll('#maps .link.weak').length")
                assert lines == len(pairs), "a line per pair of nodes that hear each other"
                assert weak == sum(pairs.values()) and weak > 0, "the hall lamp's link is weak"
                await page.wait_for(f"return {point('zigbee/00:0d:6f:00:0e:d9:ed:02', 'on', 'input.switch')};")
                await page.screenshot(images / "status-page.png")

                await page.resize(390, 844, mobile=True)
                width = await page.wait_for("return window.innerWidth === 390 && document.documentElement.scrollWidth;")
                assert width <= 390, "nothing wider than the phone's screen"
                switch = point("sim/relay", "relay", "input.switch")
                box = await page.evaluate(f"(() => {{ const r = {switch}.getBoundingClientRect(); return [r.left, r.right]; }})()")
                assert box[0] >= 0 and box[1] <= 390, box
                await page.evaluate(f"{switch}.click()")
                result = point("sim/relay", "relay", ".result")
                answer = await page.wait_for(f"const r = {result}.textContent; return r !== 'sending…' && r;")
                assert answer == "ok"
                await page.screenshot(images / "status-page-phone.png", most=1500)
    finally:
        broker.stop()
