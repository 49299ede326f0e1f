"""``edged outbox``: the messages the cloud refused for good (the dead letters).

    edged outbox dead-letters            list them: id, generation, device or event, readings, when, why
    edged outbox requeue ID... | --all   send them again (as new messages)
    edged outbox discard ID... | --all   delete them

They ask the local status API (``/api/outbox/dead-letters``), found in the
configuration unless ``--url`` is given, with the token from ``--token-file``,
``$EDGED_API_TOKEN`` or the configuration.

Exit status: 0 done, 2 the configuration cannot be read or the arguments are
wrong, 3 the API cannot be reached or refused the request.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from edged.status.cli import table
from edged.status.client import EXIT_CONFIG, EXIT_UNREACHABLE, Api, ApiError, add_api_arguments

PATH = "/api/outbox/dead-letters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "The outbox's dead letters: messages the cloud refused for good."
    actions = parser.add_subparsers(dest="outbox_action", required=True, metavar="ACTION")
    listing = actions.add_parser("dead-letters", help="list the dead letters")
    listing.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    listing.add_argument("--uplink", metavar="NAME", help="only those of this uplink")
    add_api_arguments(listing)
    for action, help_text in (("requeue", "send dead letters again"), ("discard", "delete dead letters")):
        sub = actions.add_parser(action, help=help_text)
        sub.add_argument("ids", nargs="*", type=int, metavar="ID", help="message ids (the first column of the list)")
        sub.add_argument("--all", action="store_true", help="every dead letter")
        sub.add_argument("--uplink", metavar="NAME", help="only those of this uplink (its own copy of a message)")
        add_api_arguments(sub, timeout=30.0)


def main(args: argparse.Namespace) -> int:
    if args.outbox_action != "dead-letters" and bool(args.ids) == args.all:
        print(f"edged outbox {args.outbox_action}: give message ids or --all (not both)", file=sys.stderr)
        return EXIT_CONFIG
    api = Api.from_args(args, "edged outbox")
    if api is None:
        return EXIT_CONFIG
    try:
        if args.outbox_action == "dead-letters":
            answer = api.call(PATH if args.uplink is None else f"{PATH}?{urlencode({'uplink': args.uplink})}")
            print(json.dumps(answer, indent=2) if args.json else render(answer))
            return 0
        body: dict[str, Any] = {"all": True} if args.all else {"ids": args.ids}
        if args.uplink is not None:
            body["uplink"] = args.uplink
        answer = api.call(f"{PATH}/{args.outbox_action}", body)
    except ApiError as exc:
        print(f"edged outbox: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    done = "requeued" if args.outbox_action == "requeue" else "discarded"
    print(f"{answer.get(done, 0)} readings {done}")
    return 0


def render(answer: dict[str, Any]) -> str:
    letters = answer.get("dead_letters", [])
    if not letters:
        return "no dead letters"
    rows = [
        (d["id"], d["gen"], d.get("uplink", ""), d["kind"], d["subject"], d["count"], _when(d["failed"]), d["reason"])
        for d in letters
    ]
    lines = table(["ID", "GEN", "UPLINK", "KIND", "DEVICE/EVENT", "READINGS", "FAILED", "REASON"], rows)
    return "\n".join([*lines, f"{len(letters)} dead letters, {answer.get('readings', 0)} readings"])


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")
