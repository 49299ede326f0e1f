"""Operations on the gateway itself, asked for on the command channel with ``"device": "$gateway"``.

``point`` names the operation and ``value`` holds its arguments (an object,
or nothing). Each is answered like a device command, with a
``command_result`` (``status`` ``ok`` with a ``result``, or ``rejected`` /
``failed`` with a ``reason``) to the uplink that asked:

- ``ping``: ``{"pong": true, "version", "uptime"}``
- ``status``: the document ``/api/status`` serves, with ``config`` (id, hash)
- ``reload``: read the configuration file again (a bad one is refused, with its problems)
- ``restart``: answer, then exit with status 75 so that systemd starts the gateway again
- ``set_log_level``: ``{"level": "debug", "seconds": 600}``; the previous level comes back after ``seconds``
- ``logs``: ``{"lines": 100, "level": "warning", "device": "sim/relay"}``: the last log lines kept in memory
- ``rules_check``: the rules' points no configured device has, and the engine's figures
- ``zigbee_permit``: ``{"seconds": 60, "adapter": "zigbee"}``: let Zigbee devices join
- ``config``: ``{"id", "config", "signature"}``: push a configuration (see ``edged.fleet.remote``)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from edged import __version__
from edged.adapter import RouteError
from edged.config import load_config
from edged.errors import ConfigError
from edged.fleet.ring import LEVELS, LogRing
from edged.rules.config import point_problems
from edged.status.views import status_json
from edged.yamlsource import format_path

if TYPE_CHECKING:
    from pathlib import Path

    from edged.config import Config
    from edged.fleet.remote import RemoteConfig
    from edged.fleet.ring import LevelOverride
    from edged.view import GatewayView

log = logging.getLogger(__name__)


class Fleet(Protocol):
    """What the gateway operations use of ``edged.fleet.fleet.Fleet``."""

    view: GatewayView
    remote: RemoteConfig
    levels: LevelOverride
    ring: LogRing
    config_path: Path
    restart_status: int

    @property
    def config(self) -> Config: ...

    async def reload(self) -> bool: ...

    def restart_after_answer(self) -> None: ...

MAX_LOG_LINES = 1000  # lines one logs answer may ask for
MAX_ANSWER_BYTES = 48 * 1024  # the oldest lines are left out beyond this
MAX_LEVEL_SECONDS = 86_400.0
DEFAULT_LEVEL_SECONDS = 600.0


class Refusal(Exception):
    """The operation is not done: ``str(exc)`` says why (answered ``rejected``)."""


class Failure(Exception):
    """The operation was tried and failed: ``str(exc)`` says why (answered ``failed``)."""


Operation = Callable[["Fleet", dict[str, Any]], Awaitable[Any]]


def _args(value: Any, allowed: set[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refusal(f"value must be an object of arguments ({', '.join(sorted(allowed)) or 'none'}) or left out")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise Refusal(f"unknown argument {unknown[0]!r}; expected {', '.join(sorted(allowed)) or 'none'}")
    return value


def _number(args: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise Refusal(f"{key} must be a number from {low:g} to {high:g}")
    return float(value)


async def ping(fleet: Fleet, args: dict[str, Any]) -> Any:
    return {"pong": True, "version": __version__, "uptime": round(time.monotonic() - fleet.view.started_at, 1)}


async def status(fleet: Fleet, args: dict[str, Any]) -> Any:
    document = status_json(fleet.view)
    document["config"] = {"id": fleet.remote.active[0], "hash": fleet.remote.active[1]}
    return document


async def reload(fleet: Fleet, args: dict[str, Any]) -> Any:
    if fleet.remote.trial is not None:
        raise Refusal(f"configuration {fleet.remote.trial.id} is on trial; reload after it")
    try:
        await asyncio.to_thread(load_config, fleet.config_path)
    except ConfigError as exc:
        raise Failure("the configuration file is invalid; the running configuration is kept: "
                      + "; ".join(str(problem) for problem in exc.problems)) from None  # fmt: skip
    if not await fleet.reload():
        raise Failure("the configuration file is invalid; the running configuration is kept")
    return {"reloaded": True}


async def restart(fleet: Fleet, args: dict[str, Any]) -> Any:
    fleet.restart_after_answer()
    return {"restarting": True, "exit_status": fleet.restart_status}


async def set_log_level(fleet: Fleet, args: dict[str, Any]) -> Any:
    level = args.get("level")
    if level not in LEVELS:
        raise Refusal(f"level must be one of {', '.join(LEVELS)}")
    seconds = _number(args, "seconds", DEFAULT_LEVEL_SECONDS, 1, MAX_LEVEL_SECONDS)
    fleet.levels.set(LEVELS[level], seconds)
    log.warning("log level %s for %.0f s (asked by the cloud)", level, seconds)
    return {"level": level, "until": round(time.time() + seconds, 1)}


async def logs(fleet: Fleet, args: dict[str, Any]) -> Any:
    count = int(_number(args, "lines", 100, 1, MAX_LOG_LINES))
    level = args.get("level", "debug")
    if level not in LEVELS:
        raise Refusal(f"level must be one of {', '.join(LEVELS)}")
    device = args.get("device")
    if device is not None and (not isinstance(device, str) or not device):
        raise Refusal("device must be a device id")
    return {"lines": _fitting(fleet.ring, count, LEVELS[level], device)}


def _fitting(ring: LogRing, count: int, level: int, device: str | None) -> list[dict[str, Any]]:
    """The last lines asked for, newest kept, within ``MAX_ANSWER_BYTES``."""
    lines = [line.json() for line in ring.tail(count, level, device)]
    size, kept = 0, 0
    for entry in reversed(lines):
        size += len(json.dumps(entry)) + 1
        if size > MAX_ANSWER_BYTES:
            break
        kept += 1
    return lines[len(lines) - kept :]


async def rules_check(fleet: Fleet, args: dict[str, Any]) -> Any:
    config = fleet.config()
    problems = [
        {"rule": config.rules[problem.rule].id, "where": format_path(problem.where), "message": problem.message}
        for problem in point_problems(config.rules, config.adapters)
    ]
    answer: dict[str, Any] = {"rules": len(config.rules), "problems": problems}
    if fleet.view.rules is not None:
        stats = fleet.view.rules.stats()
        answer.update(firings=stats.firings, errors=stats.errors, paused=stats.paused)
    return answer


async def zigbee_permit(fleet: Fleet, args: dict[str, Any]) -> Any:
    from edged import adapters

    running = [adapter for adapter in fleet.view.adapters.values() if adapter.config.type == "zigbee"]
    wanted = args.get("adapter")
    if wanted is not None:
        running = [adapter for adapter in running if adapter.name == wanted]
    if not running:
        raise Refusal("no Zigbee adapter runs" + (f" named {wanted!r}" if wanted is not None else ""))
    route = next((route for route in adapters.routes("zigbee") if route.path == "permit"), None)
    if route is None:
        raise Refusal("the Zigbee adapter offers no permit operation")
    body = {key: value for key, value in args.items() if key == "seconds"}
    try:
        if len(running) == 1 or route.handle_all is None:
            answers = [await route.handle(adapter, body) for adapter in running]
            return answers[0] if len(answers) == 1 else {"adapters": answers}
        return await route.handle_all(running, body)
    except RouteError as exc:
        raise (Refusal if exc.status < 500 else Failure)(str(exc)) from None


OPERATIONS: dict[str, tuple[Operation, set[str]]] = {
    "ping": (ping, set()),
    "status": (status, set()),
    "reload": (reload, set()),
    "restart": (restart, set()),
    "set_log_level": (set_log_level, {"level", "seconds"}),
    "logs": (logs, {"lines", "level", "device"}),
    "rules_check": (rules_check, set()),
    "zigbee_permit": (zigbee_permit, {"seconds", "adapter"}),
}
