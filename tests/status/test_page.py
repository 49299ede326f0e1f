"""The status page in a real browser (Debian's headless chromium, driven
over the DevTools protocol): it lists the adapters and devices, and a value
changed on the device shows up without reloading the page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edged.model import Command
from tests.status.conftest import StartDaemon, http_url

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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


def cell(device: str, point: str, column: int) -> str:
    return f"document.querySelector('tr[data-device=\"{device}\"][data-point=\"{point}\"]')?.cells[{column}]?.textContent"


async def test_page_shows_adapters_devices_and_live_values(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await start_daemon(interval="200ms")
    async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
        async with asyncio.timeout(30):
            adapters = await page.evaluate(WAIT_FOR.format(
                body="const t = document.querySelector('#adapters tbody')?.textContent; return t && t.includes('running') && t;"
            ))
            assert "sim" in adapters and "simulated" in adapters
            setpoint = await page.evaluate(WAIT_FOR.format(body=f"return {cell('sim/thermostat', 'setpoint', 3)};"))
            assert setpoint == "21 Cel"
            name = await page.evaluate(f"{cell('sim/thermostat', 'setpoint', 0)}")
            assert name == "Living room (sim/thermostat)"

            result = await daemon.hub.execute(Command("sim/thermostat", "setpoint", 23.5))
            assert result.ok
            # The page polls the API; the new value appears in place, with no reload.
            await page.evaluate("window.notReloaded = true")
            updated = await page.evaluate(WAIT_FOR.format(
                body=f"const v = {cell('sim/thermostat', 'setpoint', 3)}; return v === '23.5 Cel' && v;"
            ))
            assert updated == "23.5 Cel"
            assert await page.evaluate("window.notReloaded") is True


async def test_page_asks_for_the_token_when_the_api_needs_one(start_daemon: StartDaemon, tmp_path: Path) -> None:
    daemon = await start_daemon("  http: {host: 127.0.0.1, port: 0, token: page-token}", interval="200ms")
    async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
        async with asyncio.timeout(30):
            await page.evaluate(WAIT_FOR.format(body="return !document.getElementById('login').hidden;"))
            assert await page.evaluate("document.querySelector('#devices tbody').rows.length") == 0
            await page.evaluate(
                "document.getElementById('token').value = 'page-token';"
                "document.querySelector('#login button').click();"
            )
            value = await page.evaluate(WAIT_FOR.format(body=f"return {cell('sim/relay', 'relay', 3)};"))
            assert value == "false"


async def test_page_says_why_a_device_and_its_adapter_fail(start_daemon: StartDaemon, tmp_path: Path) -> None:
    from tests.uplink.peers import free_port

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
            problem = await page.evaluate(WAIT_FOR.format(body=f"return {row}?.cells[3]?.textContent;"))
            assert problem.startswith(f"tcp://127.0.0.1:{port} is not connected ("), problem
            assert await page.evaluate(f"{row}.cells[2].textContent") == "never"
            assert await page.evaluate("document.getElementById('problems-section').hidden") is False
            adapters = await page.evaluate(WAIT_FOR.format(
                body="const t = document.querySelector('#adapters tbody')?.textContent; "
                     "return t && t.includes('cannot connect') && t;"
            ))
            assert f"cannot connect to tcp://127.0.0.1:{port}" in adapters
            assert "sim/thermostat" not in await page.evaluate("document.querySelector('#problems').textContent")
