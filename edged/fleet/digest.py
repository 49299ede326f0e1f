"""The state digest: one small retained message that tells a fleet dashboard how a gateway is.

Published (retained) on ``{prefix}/state`` every ``state_interval`` and
whenever the gateway's health, an uplink's connection or an adapter's state
changes. Fields (docs/fleet.md):

- ``v``: edged's version; ``gateway``: its id; ``ts``: when it was made (Unix s);
- ``config``: ``{"id", "hash"}`` of the running configuration (hash: first 16 hex of SHA-256);
- ``uptime``: seconds; ``health``: ``ok`` or ``unhealthy``; ``reasons``: why not;
- ``adapters``: per adapter ``[state, devices, online]``;
- ``uplinks``: per uplink ``[connected (0/1), readings waiting]``;
- ``outbox``: ``[readings stored, age of the oldest in s]``;
- ``rules``: ``[firings, errors]`` since the last digest (absent without rules).
"""

from __future__ import annotations

import json
import time
from typing import Any

from edged import __version__
from edged.view import GatewayView

MAX_REASONS = 5  # health reasons listed; more are counted
MAX_REASON = 120  # characters of one reason


def digest(view: GatewayView, config: tuple[str, str], rules_before: tuple[int, int]) -> dict[str, Any]:
    """The digest of ``view`` now, for the running configuration ``config`` (id, hash)."""
    problems = view.health_problems()
    reasons = [problem[:MAX_REASON] for problem in problems[:MAX_REASONS]]
    if len(problems) > MAX_REASONS:
        reasons.append(f"and {len(problems) - MAX_REASONS} more")
    document: dict[str, Any] = {
        "v": __version__,
        "gateway": view.gateway_id,
        "ts": round(time.time(), 1),
        "config": {"id": config[0], "hash": config[1][:16]},
        "uptime": round(time.monotonic() - view.started_at),
        "health": "unhealthy" if problems else "ok",
        "reasons": reasons,
        "adapters": {},
        "uplinks": {},
    }
    for name, adapter in list(view.adapters.items()):
        devices = view.hub.adapter_devices(name)
        document["adapters"][name] = [adapter.state.value, len(devices), sum(1 for d in devices if d.online)]
    if view.uplink is not None:
        for name, service in view.uplink.services.items():
            document["uplinks"][name] = [int(service.connected), service.lane.depth]
        outbox = view.uplink.outbox
        if outbox.is_open:
            stats = outbox.stats()
            document["outbox"] = [stats.depth, None if stats.oldest_age is None else round(stats.oldest_age)]
    if view.rules is not None:
        stats = view.rules.stats()
        document["rules"] = [stats.firings - rules_before[0], stats.errors - rules_before[1]]
    return document


def rule_totals(view: GatewayView) -> tuple[int, int]:
    """The rules engine's firings and errors so far (for the next digest's interval)."""
    if view.rules is None:
        return (0, 0)
    stats = view.rules.stats()
    return (stats.firings, stats.errors)


def changes(document: dict[str, Any]) -> Any:
    """What, when it changes, makes a digest go out before its time."""
    return (
        document["health"],
        tuple(document["reasons"]),
        tuple((name, state[0]) for name, state in document["adapters"].items()),
        tuple((name, up[0]) for name, up in document["uplinks"].items()),
        document["config"]["hash"],
    )


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
