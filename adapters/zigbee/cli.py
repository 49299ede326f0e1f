"""``edged zigbee permit --seconds N``: let new Zigbee devices join the running gateway;
``edged zigbee remove DEVICE``: ask a device to leave the network and forget it.

They ask the local status API (``POST /api/zigbee/permit``, ``/api/zigbee/remove``), found in the
configuration unless ``--url`` is given; the bearer token comes from
``--token-file``, ``$EDGED_API_TOKEN`` or the configuration. Importing this
module imports no protocol stack.

Exit status: 0 done, 2 the configuration cannot be read,
3 the API cannot be reached or refused the request.
"""

from __future__ import annotations

import argparse
import sys

from edged.status.client import EXIT_CONFIG, Api, ApiError, add_api_arguments
from edged.status.client import EXIT_UNREACHABLE as EXIT_API

PERMIT_MAX_SECONDS = 254  # Zigbee's Mgmt_Permit_Joining limit (255 would mean "forever")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Zigbee network operations on the running gateway."
    actions = parser.add_subparsers(dest="zigbee_action", required=True, metavar="ACTION")
    permit = actions.add_parser("permit", help="let new devices join for a while")
    permit.add_argument("--seconds", type=_seconds, default=60, help="how long joining stays open, 0..254 (default 60)")
    add_api_arguments(permit, timeout=10.0)
    remove = actions.add_parser("remove", help="ask a device to leave the network and forget it")
    remove.add_argument("device", help="its device id, e.g. zigbee/00:12:4b:00:01:02:03:04")
    add_api_arguments(remove, timeout=40.0)  # a sleeping end device gets 30 s to take the leave request


def main(args: argparse.Namespace) -> int:
    api = Api.from_args(args, "edged zigbee")
    if api is None:
        return EXIT_CONFIG
    try:
        if args.zigbee_action == "remove":
            answer = api.call("/api/zigbee/remove", {"device": args.device})
            print(f"{answer.get('removed', args.device)} removed")
            return 0
        answer = api.call("/api/zigbee/permit", {"seconds": args.seconds})
    except ApiError as exc:
        print(f"edged zigbee: {exc}", file=sys.stderr)
        return EXIT_API
    adapters = ", ".join(answer.get("adapters", [])) or "the gateway"
    print(f"joining permitted on {adapters} for {answer.get('seconds', args.seconds)} s")
    return 0


def _seconds(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole seconds, got {text!r}") from None
    if not 0 <= seconds <= PERMIT_MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"expected 0..{PERMIT_MAX_SECONDS} seconds, got {seconds}")
    return seconds
