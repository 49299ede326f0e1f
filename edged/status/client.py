"""The local status API as the command line reaches it (``edged status``,
``edged zigbee permit``, ``edged simulated outage``): where it listens and which token it takes, found
from ``--url``/``--token-file``/``$EDGED_API_TOKEN`` or the configuration.

Plain ``urllib``: a command that runs for a moment needs no event loop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3


class ApiError(Exception):
    """The API could not be reached or refused; ``str()`` says why."""


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"expected {low}..{high}, got {number}")
        return number

    return parse


def add_api_arguments(parser: argparse.ArgumentParser, timeout: float = 5.0) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=Path(os.environ.get("EDGED_CONFIG", "/etc/edged/config.yaml")),
        help="find the API address and token in this configuration (default: $EDGED_CONFIG or /etc/edged/config.yaml)",
    )
    parser.add_argument("--url", help="the status API, e.g. http://127.0.0.1:8080 (overrides the configuration)")
    parser.add_argument("--token-file", type=Path, help="read the bearer token from this file ($EDGED_API_TOKEN also works)")
    parser.add_argument("--timeout", type=float, default=timeout, help=f"seconds to wait for the API (default {timeout:g})")


@dataclass(frozen=True, slots=True)
class Api:
    url: str
    token: str | None
    timeout: float

    @classmethod
    def from_args(cls, args: argparse.Namespace, prog: str) -> Api | None:
        """The API the arguments name; ``None`` (after saying why on stderr) when they cannot be used."""
        url, token = args.url, os.environ.get("EDGED_API_TOKEN")
        if args.token_file is not None:
            try:
                token = args.token_file.read_text().strip()
            except OSError as exc:
                print(f"{prog}: cannot read {args.token_file}: {exc.strerror}", file=sys.stderr)
                return None
        if url is None or token is None:
            found = _from_config(args.config, prog)
            if found is None:
                return None
            url, token = url or found[0], token or found[1]
        return cls(url, token, args.timeout)

    def call(self, path: str, body: object = None) -> Any:
        """GET ``path`` (or POST ``body`` as JSON) and return the JSON answer; raise ``ApiError``."""
        request = urllib.request.Request(
            self.url.rstrip("/") + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Accept": "application/json", **({} if body is None else {"Content-Type": "application/json"})},
            method="GET" if body is None else "POST",
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{self.url} answered {exc.code}: {_reason(exc)}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from exc


def _from_config(path: Path, prog: str) -> tuple[str, str | None] | None:
    from edged.config import load_config
    from edged.errors import ConfigError

    if not path.exists():
        return "http://127.0.0.1:8080", None
    try:
        http = load_config(path).status.http
    except ConfigError as exc:
        print(f"{exc}\n{prog}: give --url (and --token-file) to skip the configuration", file=sys.stderr)
        return None
    # A wildcard listener is reached on loopback from here.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(http.host, http.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{http.port}", None if http.token is None else http.token.get_secret_value()


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.load(exc)
    except (ValueError, OSError):
        return str(exc.reason)
    return str(body.get("error") or exc.reason) if isinstance(body, dict) else str(exc.reason)
