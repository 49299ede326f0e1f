"""The local HTTP status API and status page (aiohttp).

Read:
- ``GET /health``: 200 ``{"status": "ok"}`` when healthy, 503 with the reasons otherwise
- ``GET /api/status``: version, uptime, gateway id, adapters, outbox, uplink, recent rule firings
  and command results
- ``GET /api/devices``: every device with its points' last values
- ``GET /api/devices/{id}``: one device; 404 with a JSON error when unknown
- ``GET /api/history?device=<id>[&point=<key>]``: the last hour of a device's
  numeric points (or one point), one mean per 30 s: ``{"device", "points":
  {key: {"start", "step", "values"}}}``; ``GET /api/history/uplinks``: each
  uplink's connection and messages waiting, the outbox's depth and oldest
  age, every 10 s for the last hour: ``{"step", "times", "series": {name: [...]}}``
- ``GET /metrics``: Prometheus text format
- ``GET /``: the status page (edged/status/static/)

Write:
- ``POST /api/devices/{id}/points/{key}`` ``{"value": v}``: issue a Command, answer its result
- ``GET|POST /api/adapters/{instance}/{operation}``: an operation the adapter
  offers (its ``Route``s, e.g. Zigbee's ``permit`` and ``remove``); an older
  path of one (``POST /api/zigbee/permit``) does it on every running adapter
  of the type
- ``GET /api/outbox/dead-letters``: messages the cloud refused for good
- ``POST /api/outbox/dead-letters/requeue`` or ``.../discard``, ``{"ids": [...]}``
  or ``{"all": true}``: send them again as new messages, or delete them

When a token is configured every request but ``GET /health`` and the page's
static files must carry ``Authorization: Bearer <token>``. The configuration
refuses a listener off loopback without a token, and so does this server.

A web page the user visits must not reach the API through the browser:
every request must name this API in ``Host`` (the listen address,
``localhost``, ``127.0.0.1``, ``[::1]`` or the address the connection came
in on, with this port; or a ``status.http.allowed_hosts`` entry), else 421,
so a name rebound to this address (DNS rebinding) gets nothing. A write
(any method but GET and HEAD) must be ``Content-Type: application/json``
(415 otherwise: a cross-site form or ``no-cors`` fetch cannot send it) and,
when it carries ``Origin``, come from the API's own origin or one in
``status.http.allowed_origins`` (403 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web

from edged import adapters
from edged.adapter import JSON, Route, RouteError
from edged.config import HttpStatusConfig, is_loopback
from edged.model import Command, CommandResult, CommandStatus, Origin
from edged.part import State
from edged.status.authority import DEFAULT_PORTS, Authority, WebOrigin
from edged.status.history import PointHistory, RecentCommands, Trend, uplink_figures
from edged.status.views import device_json, devices_json, health_json, isotime, status_json
from edged.view import GatewayView

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
SAFE_METHODS = frozenset({"GET", "HEAD"})  # every other method is a write
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
REPORTED_MAX = 64  # distinct refusals logged as warnings; the rest at debug level

# What a command's outcome means for the HTTP client.
_RESULT_STATUS = {
    CommandStatus.OK: 200,
    CommandStatus.PENDING: 202,
    CommandStatus.REJECTED: 422,
    CommandStatus.FAILED: 502,
    CommandStatus.TIMEOUT: 504,
}


class StatusServer:
    def __init__(self, view: GatewayView, config: HttpStatusConfig, listening: asyncio.Event | None = None) -> None:
        self.view = view
        self.config = config
        token = self.config.token
        if token is None and not is_loopback(self.config.host):
            raise ValueError(f"refusing to serve the status API on {self.config.host} without a token")
        self._token = None if token is None else token.get_secret_value().encode()
        self._names = set(LOOPBACK_NAMES)
        if self.config.host not in WILDCARD_HOSTS:
            with contextlib.suppress(ValueError):  # not a name a browser could send
                self._names.add(Authority(self.config.host).host)
        self._allowed_hosts = tuple(Authority.parse(entry) for entry in self.config.allowed_hosts)
        self._allowed_origins = frozenset(WebOrigin.parse(entry) for entry in self.config.allowed_origins)
        self._reported: set[tuple[int, str]] = set()
        self.app = web.Application(middlewares=[self._same_origin, self._authorize])
        self.app.add_routes(
            [
                web.get("/health", self.health),
                web.get("/api/status", self.status),
                web.get("/api/devices", self.devices),
                web.get("/api/history", self.history_of),
                web.get("/api/history/uplinks", self.uplink_history),
                web.post("/api/devices/{id:.+}/points/{key}", self.write),
                web.get("/api/devices/{id:.+}", self.device),
                web.route("*", "/api/adapters/{name}/{operation:.+}", self.adapter_operation),
                *self._aliases(),
                web.get("/api/outbox/dead-letters", self.dead_letters),
                web.post("/api/outbox/dead-letters/{action:requeue|discard}", self.handle_dead_letters),
                web.get("/metrics", self.metrics),
                web.get("/", self.page),
                web.static("/static", STATIC),
            ]
        )
        self._metrics: Any = None
        self.history = PointHistory(max_points=config.history_points)
        self.trend = Trend()
        self.commands = RecentCommands(isotime=isotime)
        self.port: int | None = None  # the bound port, once listening (useful with port 0)
        self.listening = listening or asyncio.Event()

    async def run(self) -> None:
        hub = self.view.hub
        unsubscribe = [hub.subscribe_events(self.commands.on_event)]
        if self.config.history_points:
            unsubscribe += [hub.subscribe(self.history.record), hub.subscribe_events(self.history.on_event)]
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        sampler = asyncio.create_task(self._sample_uplinks(), name="status: uplink trend")
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
            await site.start()
            self.port = runner.addresses[0][1]
            log.info("status API on http://%s:%d", self.config.host, self.port)
            self.listening.set()
            await asyncio.Event().wait()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            for stop in unsubscribe:
                stop()
            self.listening.clear()
            await runner.cleanup()

    async def _sample_uplinks(self) -> None:
        """Sample the uplinks' figures for the uplink panel's chart, every ``trend.step`` seconds."""
        while True:
            figures = uplink_figures(self.view)
            if figures:
                self.trend.sample(figures)
            await asyncio.sleep(self.trend.step)

    # -- what a browser may send -------------------------------------------

    @web.middleware
    async def _same_origin(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Answer only requests that name this API, and take writes only as JSON from its own pages."""
        host = request.headers.get(hdrs.HOST)
        authority = None if host is None else self._own_authority(request, host)
        if host is not None and authority is None:
            return self._refuse(request, 421, host, (
                f"this API does not answer to the name {host!r}; if that is this gateway's name, "
                "add it to status.http.allowed_hosts"
            ))
        if request.method in SAFE_METHODS:
            return await handler(request)
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None and not self._own_origin(request, origin, authority):
            return self._refuse(request, 403, origin, (
                f"writes from the web page at {origin!r} are refused: only this API's own pages "
                "(and status.http.allowed_origins) may write"
            ))
        if request.content_type != "application/json":
            return self._refuse(request, 415, request.content_type, (
                f"a write must be sent as Content-Type: application/json; got {request.content_type!r}"
            ))
        return await handler(request)

    def _own_authority(self, request: web.Request, host: str) -> Authority | None:
        """``host`` (a Host header) with its port filled in if it names this API; None otherwise."""
        try:
            authority = Authority.parse(host)
        except ValueError:
            return None
        port = authority.port or 80
        local_host, local_port = _local_address(request)
        names = self._names if local_host is None else self._names | {local_host}
        if authority.host in names and port == (local_port or self.port):
            return Authority(authority.host, port)
        for allowed in self._allowed_hosts:
            if allowed.host == authority.host and allowed.port in (None, port):
                return Authority(authority.host, port)
        return None

    def _own_origin(self, request: web.Request, origin: str, authority: Authority | None) -> bool:
        try:
            parsed = WebOrigin.parse(origin)
        except ValueError:
            return False  # "null" (a sandboxed frame, a file) and anything unreadable
        if parsed in self._allowed_origins:
            return True
        if authority is None:
            return False
        return parsed == WebOrigin(request.scheme, authority.host, authority.port or DEFAULT_PORTS[request.scheme])

    def _refuse(self, request: web.Request, status: int, found: str, reason: str) -> web.Response:
        """A refusal, logged as a warning the first time it is seen (a page can repeat it endlessly)."""
        key = (status, found)
        level = logging.DEBUG
        if key not in self._reported and len(self._reported) < REPORTED_MAX:
            self._reported.add(key)
            level = logging.WARNING
        log.log(level, "refused %s %s from %s (%d): %s", request.method, request.raw_path, request.remote, status, reason)
        return _error(status, reason)

    # -- authorization ---------------------------------------------------

    @web.middleware
    async def _authorize(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self._token is None or _is_public(request):
            return await handler(request)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token):
            return web.json_response(
                {"error": "a bearer token is required (Authorization: Bearer <token>)"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="edged"'},
            )
        return await handler(request)

    # -- reading ---------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        healthy, document = health_json(self.view)
        return web.json_response(document, status=200 if healthy else 503)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({**status_json(self.view), "commands": self.commands.json()})

    async def devices(self, request: web.Request) -> web.Response:
        return web.json_response(devices_json(self.view))

    async def device(self, request: web.Request) -> web.Response:
        device = self.view.hub.devices.get(request.match_info["id"])
        if device is None:
            return _error(404, f"unknown device {request.match_info['id']!r}")
        return web.json_response(device_json(self.view, device))

    async def history_of(self, request: web.Request) -> web.Response:
        device_id, key = request.query.get("device"), request.query.get("point")
        if not device_id:
            raise _bad_request("expected ?device=<device id> (and &point=<key> for one point)")
        device = self.view.hub.devices.get(device_id)
        if device is None:
            return _error(404, f"unknown device {device_id!r}")
        if key is None:
            return web.json_response({"device": device_id, "points": self.history.device(device_id)})
        if key not in device.points:
            return _error(404, f"device {device_id!r} has no point {key!r}")
        series = self.history.series(device_id, key)
        return web.json_response({"device": device_id, "points": {} if series is None else {key: series}})

    async def uplink_history(self, request: web.Request) -> web.Response:
        return web.json_response(self.trend.json())

    async def metrics(self, request: web.Request) -> web.Response:
        if self._metrics is None:
            from edged.metrics import Metrics

            self._metrics = Metrics(self.view)
        body = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": self._metrics.content_type})

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    # -- writing ---------------------------------------------------------

    async def write(self, request: web.Request) -> web.Response:
        device_id, key = request.match_info["id"], request.match_info["key"]
        body = await _json_object(request)
        if "value" not in body:
            raise _bad_request('expected a JSON object {"value": ...}')
        hold = body.get("hold_if_offline", False)
        if not isinstance(hold, bool):
            raise _bad_request("hold_if_offline must be true or false")
        device = self.view.hub.devices.get(device_id)
        if device is None:
            return _error(404, f"unknown device {device_id!r}")
        if key not in device.points:
            return _error(404, f"device {device_id!r} has no point {key!r}")
        result = await self.view.hub.execute(Command(device_id, key, body["value"], Origin.API), hold_if_offline=hold)
        log.info(
            "API write %s.%s=%r from %s: %s", device_id, key, body["value"], request.remote, result.status,
            extra={"device": device_id},
        )
        status = _RESULT_STATUS[result.status]
        if result.status is CommandStatus.REJECTED and not device.online:
            status = 409  # the request was fine; the device is not there to take it
        return web.json_response(_result_json(result), status=status)

    # -- what adapters offer ---------------------------------------------

    async def adapter_operation(self, request: web.Request) -> web.Response:
        name, operation = request.match_info["name"], request.match_info["operation"]
        adapter = self.view.adapters.get(name)
        if adapter is None:
            return _error(404, f"no adapter {name!r} is running")
        route = next((r for r in adapters.routes(adapter.config.type) if r.path == operation), None)
        if route is None:
            return _error(404, f"adapter {name!r} ({adapter.config.type}) has no operation {operation!r}")
        if request.method != route.method:
            return _error(405, f"{operation} takes {route.method}")
        if adapter.state is not State.RUNNING:
            return _error(409, f"adapter {name!r} is {adapter.state}")
        return await _answer(request, route.handle(adapter, await _body(request)))

    def _aliases(self) -> list[web.RouteDef]:
        """The older paths of adapters' operations: each does it on every running adapter of its type."""
        return [
            web.route(route.method, route.alias, self._alias_handler(type_, route))
            for type_ in adapters.registry()
            for route in adapters.routes(type_)
            if route.alias is not None and route.handle_all is not None
        ]

    def _alias_handler(self, type_: str, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = await _body(request)
            running = [a for a in list(self.view.adapters.values()) if a.config.type == type_ and a.state is State.RUNNING]
            if not running:
                return _error(409, f"no {type_} adapter is running (is one configured?)")
            assert route.handle_all is not None
            return await _answer(request, route.handle_all(running, body))

        return handle

    async def dead_letters(self, request: web.Request) -> web.Response:
        outbox = self.view.outbox
        if outbox is None:
            return _error(409, "no outbox is open (is an uplink configured?)")
        uplink = request.query.get("uplink")
        if uplink is not None and uplink not in outbox.uplinks:
            return _error(404, f"no uplink {uplink!r} (the outbox has {', '.join(outbox.uplinks)})")
        letters = await outbox.list_dead_letters(uplink=uplink)
        readings = outbox.dead_letters if uplink is None else outbox.lane(uplink).dead_letters
        return web.json_response({"dead_letters": [letter._asdict() for letter in letters], "readings": readings})

    async def handle_dead_letters(self, request: web.Request) -> web.Response:
        outbox = self.view.outbox
        if outbox is None:
            return _error(409, "no outbox is open (is an uplink configured?)")
        body = await _json_object(request)
        ids, uplink = body.get("ids"), body.get("uplink")
        if body.get("all") is True and ids is None:
            wanted = None
        elif isinstance(ids, list) and len(ids) <= 10_000 and all(type(i) is int for i in ids):
            wanted = ids
        else:
            raise _bad_request('expected {"ids": [<message id>, ...]} or {"all": true}, and maybe "uplink": <name>')
        if uplink is not None and (not isinstance(uplink, str) or uplink not in outbox.uplinks):
            return _error(404, f"no uplink {uplink!r} (the outbox has {', '.join(outbox.uplinks)})")
        action = request.match_info["action"]
        count = await (outbox.requeue(wanted, uplink) if action == "requeue" else outbox.discard(wanted, uplink))
        log.warning("API %s of dead letters %s%s from %s: %d readings", action, "all" if wanted is None else wanted,
                    "" if uplink is None else f" of uplink {uplink}", request.remote, count)  # fmt: skip
        return web.json_response({"requeued" if action == "requeue" else "discarded": count})


def _is_public(request: web.Request) -> bool:
    """``GET /health`` and the page's static files carry no data and need no token."""
    if request.method not in ("GET", "HEAD"):
        return False
    return request.path in ("/health", "/") or request.path.startswith("/static/")


def _local_address(request: web.Request) -> tuple[str | None, int | None]:
    """The address and port the request's connection came in on."""
    sockname = None if request.transport is None else request.transport.get_extra_info("sockname")
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return None, None
    try:
        return Authority(sockname[0]).host, sockname[1]
    except ValueError:
        return None, sockname[1]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request) -> JSON:
    """A write's JSON object, or a read's query parameters."""
    return dict(request.query) if request.method in SAFE_METHODS else await _json_object(request)


async def _answer(request: web.Request, work: Awaitable[JSON]) -> web.Response:
    try:
        answer = await work
    except RouteError as exc:
        log.warning("%s %s from %s: %s", request.method, request.path, request.remote, exc)
        return _error(exc.status, str(exc))
    log.info("%s %s from %s: %s", request.method, request.path, request.remote, answer)
    return web.json_response(answer)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep, a number too long
        raise _bad_request(f"the body is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict):
        raise _bad_request(f"expected a JSON object; got {type(body).__name__}")
    return body


def _result_json(result: CommandResult) -> dict[str, Any]:
    command = result.command
    return {
        "id": command.id,
        "device": command.device_id,
        "key": command.key,
        "value": command.value,
        "status": result.status.value,
        "reason": result.reason,
        "ts": isotime(result.ts),
    }
