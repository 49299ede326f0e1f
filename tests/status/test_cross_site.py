"""A web page the user visits, in a real headless Chromium, tries to use the
API on loopback: a ``no-cors`` fetch and a form POST from another origin
reach the API and write nothing, and a name rebound to 127.0.0.1 reads
nothing. The API's own page still writes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from edged.daemon import Daemon
from tests.status.conftest import StartDaemon, http_url

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")

# The attacker's page: a no-cors fetch with JSON text as text/plain, then a
# text/plain form whose body reads as JSON ({"value": true, "x": "="}); it
# marks the DOM once both have had their answer.
ATTACKER_PAGE = """<!doctype html>
<html><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" enctype="text/plain" target="sink" action="{api}/api/devices/sim/relay/points/relay">
  <input type="hidden" name='{{"value": true, "x": "' value='"}}'>
</form>
<script>
const api = {api_json};
fetch(api + "/api/devices/sim/thermostat/points/setpoint", {{
  method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: JSON.stringify({{value: 27}}),
}}).then(() => "answered", (error) => "failed: " + error).then((outcome) => {{
  document.body.insertAdjacentHTML("beforeend", `<p id="fetch">fetch ${{outcome}}</p>`);
  document.querySelector("iframe").addEventListener("load", () => {{
    document.body.insertAdjacentHTML("beforeend", '<p id="form-done">form answered</p>');
  }});
  document.getElementById("form").submit();
}});
</script>
</body></html>
"""


class Refusals(logging.Handler):
    """Counts the API's refusals as it logs them; ``arrived`` is set once ``expected`` came in."""

    def __init__(self, expected: int) -> None:
        super().__init__(logging.DEBUG)
        self.expected = expected
        self.messages: list[str] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("refused "):
            self.messages.append(record.getMessage())
            if len(self.messages) >= self.expected:
                self.arrived.set()


@pytest.fixture
def refusals(caplog: pytest.LogCaptureFixture) -> Callable[[int], Refusals]:
    logger = logging.getLogger("edged.status.http")
    caplog.set_level(logging.DEBUG, logger=logger.name)  # repeated refusals are logged at debug level
    handlers: list[Refusals] = []

    def watch(expected: int) -> Refusals:
        handler = Refusals(expected)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield watch
    for handler in handlers:
        logger.removeHandler(handler)


@pytest.fixture
async def attacker_site(start_daemon: StartDaemon) -> AsyncIterator[tuple[Daemon, str]]:
    """The daemon, and the URL of a page on another loopback origin that attacks its API."""
    daemon = await start_daemon()
    api = http_url(daemon)
    page = ATTACKER_PAGE.format(api=api, api_json=json.dumps(api))

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.2", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        yield daemon, f"http://{host}:{port}/"
    finally:
        await runner.cleanup()


async def dump_dom(url: str, profile: Path, *flags: str) -> str:
    """The DOM of ``url`` once Chromium's page has settled (its network quiet, 5 s of virtual time)."""
    proc = await asyncio.create_subprocess_exec(
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
        *flags, "--virtual-time-budget=5000", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return stdout.decode()


async def test_a_page_of_another_origin_cannot_write_through_the_browser(
    attacker_site: tuple[Daemon, str], refusals: Callable[[int], Refusals], tmp_path: Path
) -> None:
    daemon, attacker = attacker_site
    seen = refusals(2)
    dom = await dump_dom(attacker, tmp_path / "profile")
    assert "fetch answered" in dom and "form answered" in dom, dom  # both requests got an answer, so ...
    assert daemon.hub.value("sim/thermostat", "setpoint").value == 21.0  # ... a write would have happened by now
    assert daemon.hub.value("sim/relay", "relay").value is False
    async with asyncio.timeout(10):
        await seen.arrived.wait()  # the API had both requests and refused them
    assert any("points/setpoint" in message and "(403)" in message for message in seen.messages), seen.messages
    assert any("points/relay" in message and "(403)" in message for message in seen.messages), seen.messages


async def test_a_name_rebound_to_loopback_reads_nothing(
    start_daemon: StartDaemon, refusals: Callable[[int], Refusals], tmp_path: Path
) -> None:
    """DNS rebinding: Chromium resolves the attacker's name to 127.0.0.1 and sends that name as Host."""
    daemon = await start_daemon()
    seen = refusals(1)
    url = f"http://rebound.test:{daemon.status.port}/api/devices"
    dom = await dump_dom(url, tmp_path / "profile", "--host-resolver-rules=MAP rebound.test 127.0.0.1")
    assert "sim/thermostat" not in dom
    assert "does not answer to the name" in dom
    async with asyncio.timeout(10):
        await seen.arrived.wait()  # the request did reach the API


async def test_the_apis_own_page_can_write(start_daemon: StartDaemon, tmp_path: Path) -> None:
    """The same request from the API's own origin (Chromium sends its Origin) is taken."""
    from tests.status.test_page import browser

    daemon = await start_daemon()
    async with browser(http_url(daemon) + "/", tmp_path / "profile") as page:
        async with asyncio.timeout(30):
            status = await page.evaluate(
                "fetch('/api/devices/sim/thermostat/points/setpoint', {method: 'POST', "
                "headers: {'Content-Type': 'application/json'}, body: JSON.stringify({value: 23.5})}).then(r => r.status)"
            )
    assert status == 200
    assert daemon.hub.value("sim/thermostat", "setpoint").value == 23.5
