"""``edged status``: the status page as a terminal table, from the local API.

Exit status: 0 healthy, 1 unhealthy, 2 the configuration cannot be read,
3 the API cannot be reached or refused the request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from edged.cli import EXIT_CONFIG

EXIT_UNHEALTHY = 1
EXIT_UNREACHABLE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Show adapters, devices, outbox, uplink and rule firings of the running gateway."
    parser.add_argument(
        "-c", "--config", type=Path, default=Path(os.environ.get("EDGED_CONFIG", "/etc/edged/config.yaml")),
        help="find the API address and token in this configuration (default: $EDGED_CONFIG or /etc/edged/config.yaml)",
    )
    parser.add_argument("--url", help="the status API, e.g. http://127.0.0.1:8080 (overrides the configuration)")
    parser.add_argument("--token-file", type=Path, help="read the bearer token from this file ($EDGED_API_TOKEN also works)")
    parser.add_argument("--json", action="store_true", help="print the raw status and devices as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the API (default 5)")


def main(args: argparse.Namespace) -> int:
    url, token = args.url, os.environ.get("EDGED_API_TOKEN")
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            print(f"edged status: cannot read {args.token_file}: {exc.strerror}", file=sys.stderr)
            return EXIT_CONFIG
    if url is None or token is None:
        found = _from_config(args.config)
        if found is None:
            return EXIT_CONFIG
        url, token = url or found[0], token or found[1]
    try:
        status = _get(url, "/api/status", token, args.timeout)
        devices = _get(url, "/api/devices", token, args.timeout)
    except urllib.error.HTTPError as exc:
        print(f"edged status: {url} answered {exc.code} {exc.reason}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (urllib.error.URLError, OSError) as exc:
        print(f"edged status: cannot reach {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
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
        ["ADAPTER", "TYPE", "STATE", "ONLINE", "READINGS", "ERRORS", "RECONNECTS"],
        [[name, a["type"], a["state"], f"{a.get('online', '?')}/{a['devices']}", a.get("readings", ""),
          a.get("errors", ""), a.get("reconnects", "")] for name, a in status["adapters"].items()],
    )]
    rows = []
    for device in devices:
        for key, point in device["points"].items():
            rows.append([
                device["id"], "online" if device["online"] else "offline", key, _value(point),
                point["quality"] or "", _clock(point["ts"]),
            ])
    lines += ["", *table(["DEVICE", "STATUS", "POINT", "VALUE", "QUALITY", "UPDATED"], rows)]
    link = [[f"{part} {key}", value] for part in ("outbox", "uplink") for key, value in status.get(part, {}).items()]
    if link:
        lines += ["", *table(["OUTBOX / UPLINK", "VALUE"], link)]
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


def _from_config(path: Path) -> tuple[str, str | None] | None:
    from edged.config import load_config
    from edged.errors import ConfigError

    if not path.exists():
        return "http://127.0.0.1:8080", None
    try:
        http = load_config(path).status.http
    except ConfigError as exc:
        print(f"{exc}\nedged status: give --url and --token-file to skip the configuration", file=sys.stderr)
        return None
    # A wildcard listener is reached on loopback from here.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(http.host, http.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.port}", None if http.token is None else http.token.get_secret_value()


def _get(url: str, path: str, token: str | None, timeout: float) -> Any:
    request = urllib.request.Request(url.rstrip("/") + path, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


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
