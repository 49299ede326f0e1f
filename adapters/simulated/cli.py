"""``edged simulated outage DEVICE --seconds N``: take a simulated device away for a while,
to see what the gateway (its rules, the cloud, the status page) does when a device drops out.

It asks the running gateway's status API (``POST /api/adapters/{instance}/outage``,
the instance being the part of the device id before its first ``/``), found in
the configuration unless ``--url`` is given.

Exit status: 0 done, 2 the configuration cannot be read, 3 the API cannot be
reached or refused the request.
"""

from __future__ import annotations

import argparse
import sys

from edged.adapters.simulated.routes import MAX_OUTAGE
from edged.status.client import EXIT_CONFIG, EXIT_UNREACHABLE, Api, ApiError, add_api_arguments, bounded_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Operations on the running gateway's simulated devices."
    actions = parser.add_subparsers(dest="simulated_action", required=True, metavar="ACTION")
    outage = actions.add_parser("outage", help="take a device offline for a while")
    outage.add_argument("device", help="its device id, e.g. sim/thermostat")
    outage.add_argument("--seconds", type=bounded_int(1, MAX_OUTAGE), default=30,
                        help=f"how long it stays away, 1..{MAX_OUTAGE} (default 30)")  # fmt: skip
    add_api_arguments(outage)


def main(args: argparse.Namespace) -> int:
    api = Api.from_args(args, "edged simulated")
    if api is None:
        return EXIT_CONFIG
    instance = args.device.partition("/")[0]
    try:
        answer = api.call(f"/api/adapters/{instance}/outage", {"device": args.device, "seconds": args.seconds})
    except ApiError as exc:
        print(f"edged simulated: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"{answer['device']} is away for {answer['seconds']} s")
    return 0
