"""``edged zigbee permit --seconds N``: let new Zigbee devices join the running gateway;
``edged zigbee remove DEVICE``: ask a device to leave the network and forget it.

They ask the local status API (``POST /api/adapters/{instance}/permit`` and
``.../remove``; the instance is ``--adapter``, or the part of the device id
before its first ``/``), found in the configuration unless ``--url`` is
given; the bearer token comes from ``--token-file``, ``$EDGED_API_TOKEN`` or
the configuration. Importing this module imports no protocol stack.

Exit status: 0 done, 2 the configuration cannot be read,
3 the API cannot be reached or refused the request.
"""

from __future__ import annotations

import argparse
import sys

from edged.adapters.zigbee.config import PERMIT_MAX_SECONDS
from edged.status.client import EXIT_CONFIG, Api, ApiError, add_api_arguments, bounded_int
from edged.status.client import EXIT_UNREACHABLE as EXIT_API


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Zigbee network operations on the running gateway."
    actions = parser.add_subparsers(dest="zigbee_action", required=True, metavar="ACTION")
    permit = actions.add_parser("permit", help="let new devices join for a while")
    permit.add_argument("--seconds", type=bounded_int(0, PERMIT_MAX_SECONDS), default=60,
                        help=f"how long joining stays open, 0..{PERMIT_MAX_SECONDS} (default 60)")  # fmt: skip
    permit.add_argument("--adapter", default="zigbee", help="the Zigbee adapter's name (default zigbee)")
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
            instance = args.device.partition("/")[0]
            answer = api.call(f"/api/adapters/{instance}/remove", {"device": args.device})
            print(f"{answer.get('removed', args.device)} removed")
            return 0
        answer = api.call(f"/api/adapters/{args.adapter}/permit", {"seconds": args.seconds})
    except ApiError as exc:
        print(f"edged zigbee: {exc}", file=sys.stderr)
        return EXIT_API
    print(f"joining permitted on {answer.get('adapter', args.adapter)} for {answer.get('seconds', args.seconds)} s")
    return 0
