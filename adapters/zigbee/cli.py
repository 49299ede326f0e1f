"""``edged zigbee permit --seconds N``: let new Zigbee devices join the running gateway.

It asks the local status API (``POST /api/zigbee/permit``), found in the
configuration unless ``--url`` is given; the bearer token comes from
``--token-file``, ``$EDGED_API_TOKEN`` or the configuration. Importing this
module imports no protocol stack.

Exit status: 0 joining permitted, 2 the configuration cannot be read,
3 the API cannot be reached or refused the request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

EXIT_CONFIG = 2
EXIT_API = 3
PERMIT_MAX_SECONDS = 254  # Zigbee's Mgmt_Permit_Joining limit (255 would mean "forever")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Zigbee network operations on the running gateway."
    actions = parser.add_subparsers(dest="zigbee_action", required=True, metavar="ACTION")
    permit = actions.add_parser("permit", help="let new devices join for a while")
    permit.add_argument("--seconds", type=_seconds, default=60, help="how long joining stays open, 0..254 (default 60)")
    permit.add_argument(
        "-c", "--config", type=Path, default=Path(os.environ.get("EDGED_CONFIG", "/etc/edged/config.yaml")),
        help="find the API address and token here (default: $EDGED_CONFIG or /etc/edged/config.yaml)",
    )
    permit.add_argument("--url", help="the status API, e.g. http://127.0.0.1:8080 (overrides the configuration)")
    permit.add_argument("--token-file", type=Path, help="read the bearer token from this file ($EDGED_API_TOKEN also works)")
    permit.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the API (default 10)")


def main(args: argparse.Namespace) -> int:
    token = os.environ.get("EDGED_API_TOKEN")
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            print(f"edged zigbee: cannot read {args.token_file}: {exc.strerror}", file=sys.stderr)
            return EXIT_CONFIG
    url = args.url
    if url is None or token is None:
        found = api_from_config(args.config)
        if found is None:
            return EXIT_CONFIG
        url, token = url or found[0], token or found[1]
    request = urllib.request.Request(
        url.rstrip("/") + "/api/zigbee/permit",
        data=json.dumps({"seconds": args.seconds}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"edged zigbee: {url} answered {exc.code}: {_reason(exc)}", file=sys.stderr)
        return EXIT_API
    except (urllib.error.URLError, OSError) as exc:
        print(f"edged zigbee: cannot reach {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return EXIT_API
    adapters = ", ".join(answer.get("adapters", [])) or "the gateway"
    print(f"joining permitted on {adapters} for {answer.get('seconds', args.seconds)} s")
    return 0


def api_from_config(path: Path) -> tuple[str, str | None] | None:
    """The status API's URL (reached over loopback) and token from a configuration file."""
    from edged.config import load_config
    from edged.errors import ConfigError

    if not path.exists():
        return "http://127.0.0.1:8080", None
    try:
        http = load_config(path).status.http
    except ConfigError as exc:
        print(f"{exc}\nedged zigbee: give --url (and --token-file) to skip the configuration", file=sys.stderr)
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(http.host, http.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{http.port}", None if http.token is None else http.token.get_secret_value()


def _seconds(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole seconds, got {text!r}") from None
    if not 0 <= seconds <= PERMIT_MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected 0..{PERMIT_MAX_SECONDS} seconds, got {seconds}")
    return seconds


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.load(exc)
    except (ValueError, OSError):
        return str(exc.reason)
    return str(body.get("failures") or body.get("error") or exc.reason) if isinstance(body, dict) else str(exc.reason)
