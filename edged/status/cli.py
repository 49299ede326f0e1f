"""``edged status``: the status page as a terminal table, from the local API.

Exit status: 0 healthy, 1 unhealthy, 2 the configuration cannot be read,
3 the API cannot be reached or refused the request.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from edged.status.client import EXIT_CONFIG, EXIT_UNREACHABLE, Api, ApiError, add_api_arguments

EXIT_UNHEALTHY = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Show adapters, devices, outbox, uplink and rule firings of the running gateway."
    add_api_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the raw status and devices as JSON")


def main(args: argparse.Namespace) -> int:
    api = Api.from_args(args, "edged status")
    if api is None:
        return EXIT_CONFIG
    try:
        status = api.call("/api/status")
        devices = api.call("/api/devices")
    except ApiError as exc:
        print(f"edged status: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps({"status": status, "devices": devices}, indent=2))
    else:
        print(render(status, devices))
    return 0 if status.get("health", {}).get("status") == "ok" else EXIT_UNHEALTHY


def render(status: dict[str, Any], devices: list[dict[str, Any]]) -> str:
    """The status as text tables, the same sections as the status page."""
    health = status.get("health", {})
    lines = [
        f"edged {status['gateway']} (v{status['version']}), up {_duration(status['uptime'])}, "
        f"{status.get('readings_in', 0)} readings, health: {health.get('status', '?')}",
    ]
    lines += [f"  ! {reason}" for reason in health.get("reasons", [])]
    lines += ["", *table(
        ["ADAPTER", "TYPE", "STATE", "ONLINE", "READINGS", "ERRORS", "RECONNECTS", "PROBLEM"],
        [[name, a["type"], a["state"], f"{a.get('online', '?')}/{a['devices']}", a.get("readings", ""),
          a.get("errors", ""), a.get("reconnects", ""), problem_text(a.get("problem"))]
         for name, a in status["adapters"].items()],
    )]
    rows = []
    for device in devices:
        for key, point in device["points"].items():
            rows.append([
                device["id"], "online" if device["online"] else "offline", key, _value(point),
                point["quality"] or "", _clock(point["ts"]),
            ])
    lines += ["", *table(["DEVICE", "STATUS", "POINT", "VALUE", "QUALITY", "UPDATED"], rows)]
    failing = [d for d in devices if d.get("problem")]
    if failing:
        lines += ["", *table(
            ["DEVICE", "STATUS", "LAST SEEN", "PROBLEM"],
            [[d["id"], "online" if d["online"] else "offline", _clock(d.get("last_seen")) or "never",
              problem_text(d["problem"])] for d in failing],
        )]
    link = [[f"outbox {key}", value] for key, value in status.get("outbox", {}).items()]
    uplinks = status.get("uplinks") or ({"uplink": status["uplink"]} if "uplink" in status else {})
    for name, figures in uplinks.items():
        title = "uplink" if len(uplinks) == 1 else f"uplink {name}"
        link += [[f"{title} {key}", problem_text(value) if key == "problem" else value] for key, value in figures.items()]
    if link:
        lines += ["", *table(["OUTBOX / UPLINKS", "VALUE"], link)]
    rules = status.get("rules")
    if rules is not None:
        lines += ["", f"rules: {rules.get('firings')} firings, {rules.get('errors')} errors"]
        lines += table(
            ["TIME", "RULE", "TRIGGER", "OUTCOME"],
            [[_clock(f.get("time")), f.get("rule_id", ""), f.get("trigger", ""), f.get("outcome", "")]
             for f in rules.get("recent", [])],
        )
    return "\n".join(lines)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def problem_text(problem: dict[str, Any] | None) -> str:
    """``exception 11: gateway target failed to respond (3 times since 10:42:07)``; empty for none."""
    if not problem:
        return ""
    count = problem.get("count", 1)
    times = "once" if count == 1 else f"{count} times"
    return f"{problem['reason']} ({times} since {_clock(problem.get('since'))})"


def _value(point: dict[str, Any]) -> str:
    value = point["value"]
    if value is None:
        return ""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f"{text} {point['unit']}" if point.get("unit") else text


def _clock(iso: str | None) -> str:
    if not iso:
        return ""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m {seconds}s"
