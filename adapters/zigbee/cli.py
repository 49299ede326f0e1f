"""``edged zigbee ...``: Zigbee network operations on the running gateway.

- ``permit --seconds N``: let new devices join;
- ``remove DEVICE``: ask a device to leave the network and forget it;
- ``group list | create NAME [--id N] | delete GROUP | add GROUP DEVICE | remove GROUP DEVICE``:
  groups (a GROUP is its id, its name or its device id; a DEVICE is its id,
  ``/<endpoint>`` optional);
- ``bind SOURCE TARGET --cluster on_off`` / ``unbind ...``: the source device
  sends that cluster's commands straight to the target device or group;
  ``bindings`` lists the bindings the gateway made;
- ``map [--scan] [--json]``: the network map, each link with its LQI, weak
  ones marked (``--scan`` scans every router first: a few seconds each);
- ``ota list`` (each device's firmware and the newest image for it) and
  ``ota update DEVICE`` (start updating it; it runs on in the gateway).

They ask the local status API (``/api/adapters/{instance}/...``; the instance
is ``--adapter``, or the part of the device id before its first ``/``), found
in the configuration unless ``--url`` is given; the bearer token comes from
``--token-file``, ``$EDGED_API_TOKEN`` or the configuration. Importing this
module imports no protocol stack.

Exit status: 0 done, 2 the configuration cannot be read,
3 the API cannot be reached or refused the request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from edged.adapters.zigbee.config import BIND_CLUSTERS, GROUP_ID_MAX, PERMIT_MAX_SECONDS
from edged.status.client import EXIT_CONFIG, Api, ApiError, add_api_arguments, bounded_int
from edged.status.client import EXIT_UNREACHABLE as EXIT_API

DEVICE_TIMEOUT = 40.0  # a sleeping end device gets 30 s to take a request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Zigbee network operations on the running gateway."
    actions = parser.add_subparsers(dest="zigbee_action", required=True, metavar="ACTION")
    permit = actions.add_parser("permit", help="let new devices join for a while")
    permit.add_argument("--seconds", type=bounded_int(0, PERMIT_MAX_SECONDS), default=60,
                        help=f"how long joining stays open, 0..{PERMIT_MAX_SECONDS} (default 60)")  # fmt: skip
    _adapter(permit)
    add_api_arguments(permit, timeout=10.0)
    remove = actions.add_parser("remove", help="ask a device to leave the network and forget it")
    remove.add_argument("device", help="its device id, e.g. zigbee/00:12:4b:00:01:02:03:04")
    add_api_arguments(remove, timeout=DEVICE_TIMEOUT)
    _group_arguments(actions.add_parser("group", help="list, create and delete groups; add and remove members"))
    for name, what in (("bind", "send a device's commands straight to another device or a group"),
                       ("unbind", "remove such a binding")):  # fmt: skip
        link = actions.add_parser(name, help=what)
        link.add_argument("source", help="the sending device's id (a remote, a switch), /ENDPOINT optional")
        link.add_argument("target", help="the receiving device's id, or a group's id, name or device id")
        link.add_argument("--cluster", choices=sorted(BIND_CLUSTERS), default="on_off", help="default on_off")
        add_api_arguments(link, timeout=DEVICE_TIMEOUT)
    listing = actions.add_parser("bindings", help="list the bindings the gateway made")
    _adapter(listing)
    add_api_arguments(listing)
    netmap = actions.add_parser("map", help="the network map: who hears whom, and how well")
    netmap.add_argument("--scan", action="store_true", help="scan every router's tables first")
    netmap.add_argument("--json", action="store_true", help="print the map as the API answers it")
    _adapter(netmap)
    add_api_arguments(netmap, timeout=300.0)
    ota = actions.add_parser("ota", help="firmware updates from the gateway's local images")
    ota_actions = ota.add_subparsers(dest="ota_action", required=True, metavar="ACTION")
    ota_list = ota_actions.add_parser("list", help="each device's firmware version and the newest image for it")
    _adapter(ota_list)
    add_api_arguments(ota_list, timeout=DEVICE_TIMEOUT)
    ota_update = ota_actions.add_parser("update", help="start updating a device to the newest image")
    ota_update.add_argument("device", help="its device id, e.g. zigbee/00:12:4b:00:01:02:03:04")
    add_api_arguments(ota_update, timeout=DEVICE_TIMEOUT)


def _adapter(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", default="zigbee", help="the Zigbee adapter's name (default zigbee)")


def _group_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="group_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every group with its members")
    create = actions.add_parser("create", help="a new, empty group")
    create.add_argument("name", help="up to 16 characters")
    create.add_argument("--id", type=bounded_int(1, GROUP_ID_MAX), help="the group id (default: the lowest free one)")
    delete = actions.add_parser("delete", help="every member leaves the group, then it is forgotten")
    delete.add_argument("group", help="its id, name or device id")
    add = actions.add_parser("add", help="put a device in the group")
    remove = actions.add_parser("remove", help="take a device out of the group")
    for member in (add, remove):
        member.add_argument("group", help="its id, name or device id")
        member.add_argument("device", help="the device's id, /ENDPOINT optional")
    for sub in (listing, create, delete, add, remove):
        _adapter(sub)
        add_api_arguments(sub, timeout=DEVICE_TIMEOUT)


def main(args: argparse.Namespace) -> int:
    api = Api.from_args(args, "edged zigbee")
    if api is None:
        return EXIT_CONFIG
    try:
        print(_run(api, args))
    except ApiError as exc:
        print(f"edged zigbee: {exc}", file=sys.stderr)
        return EXIT_API
    return 0


def _run(api: Api, args: argparse.Namespace) -> str:
    """Carry out the action; return what to print."""
    action = args.zigbee_action
    if action == "remove":
        instance = args.device.partition("/")[0]
        answer = api.call(f"/api/adapters/{instance}/remove", {"device": args.device})
        return f"{answer.get('removed', args.device)} removed"
    if action == "permit":
        answer = api.call(f"/api/adapters/{args.adapter}/permit", {"seconds": args.seconds})
        return f"joining permitted on {answer.get('adapter', args.adapter)} for {answer.get('seconds', args.seconds)} s"
    if action in ("bind", "unbind"):
        instance = args.source.partition("/")[0]
        body = {"source": args.source, "target": _group_or_device(args.target), "cluster": args.cluster}
        answer = api.call(f"/api/adapters/{instance}/{action}", body)
        done = "bound" if action == "bind" else "unbound"
        return f"{done}: {_describe_link(answer.get(done, body))}"
    if action == "bindings":
        links = api.call(f"/api/adapters/{args.adapter}/bindings").get("bindings", [])
        return "\n".join(_describe_link(link) for link in links) or "no bindings"
    if action == "map":
        base = f"/api/adapters/{args.adapter}/map"
        found = api.call(f"{base}/scan", {}) if args.scan else api.call(base)
        return json.dumps(found, indent=2) if args.json else _describe_map(found)
    if action == "ota":
        return _ota(api, args)
    return _group(api, args)


def _ota(api: Api, args: argparse.Namespace) -> str:
    if args.ota_action == "update":
        instance = args.device.partition("/")[0]
        answer = api.call(f"/api/adapters/{instance}/ota/update", {"device": args.device})
        return (f"{answer.get('device', args.device)}: updating {_version(answer.get('from_version'))} -> "
                f"{_version(answer.get('to_version'))}; follow it with edged zigbee ota list")  # fmt: skip
    lines = []
    for entry in api.call(f"/api/adapters/{args.adapter}/ota").get("devices", []):
        if entry.get("progress") is not None:
            state = f"updating {entry['progress']:.0f} %"
        elif entry.get("current_version") is None:
            state = "did not answer (a sleeping device answers when it wakes)"
        elif entry.get("available_version") is not None:
            state = f"update available: {_version(entry['available_version'])}"
        else:
            state = "up to date"
        lines.append(f"{entry['device']} {entry.get('model')}: {_version(entry.get('current_version'))}, {state}")
    return "\n".join(lines) or "no device takes firmware updates"


def _version(value: int | None) -> str:
    return "unknown" if value is None else f"0x{value:08X}"


def _group(api: Api, args: argparse.Namespace) -> str:
    base = f"/api/adapters/{args.adapter}/groups"
    action = args.group_action
    if action == "list":
        found = api.call(base).get("groups", [])
        return "\n".join(_describe_group(group) for group in found) or "no groups"
    if action == "create":
        body: dict[str, Any] = {"name": args.name, **({} if args.id is None else {"id": args.id})}
        return f"created {_describe_group(api.call(f'{base}/create', body))}"
    if action == "delete":
        answer = api.call(f"{base}/delete", {"group": _group_or_device(args.group)})
        return f"group {answer.get('deleted', args.group)} deleted"
    answer = api.call(f"{base}/{action}", {"group": _group_or_device(args.group), "device": args.device})
    return _describe_group(answer)


def _group_or_device(text: str) -> str | int:
    """A group id given as a number (16, 0x10) is sent as one; names and device ids as text."""
    try:
        return int(text, 0)
    except ValueError:
        return text


def _describe_group(group: dict[str, Any]) -> str:
    members = ", ".join(f"{m['device']}/{m['endpoint']}" for m in group.get("members", [])) or "no members"
    return f"{group.get('device')} {group.get('name')!r} (0x{group.get('id', 0):04X}): {members}"


def _describe_link(link: dict[str, Any]) -> str:
    target = f"group 0x{link['group']:04X}" if "group" in link else f"{link.get('target')}/{link.get('target_ep')}"
    cluster = next((name for name, cid in BIND_CLUSTERS.items() if cid == link.get("cluster")), link.get("cluster"))
    origin = f" [{link['origin']}]" if "origin" in link else ""
    return f"{link.get('source')}/{link.get('source_ep')} {cluster} -> {target}{origin}"


def _describe_map(found: dict[str, Any]) -> str:
    """The map as lines: a heading, then each link as its source hears it, weakest first."""
    names = {n["ieee"]: n.get("name") or n.get("device") or n["role"] for n in found.get("nodes", [])}
    scanned = found.get("scanned_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(scanned)) if scanned else "never scanned (try --scan)"
    lines = [
        f"{found.get('adapter')}: {len(found.get('nodes', []))} nodes, {len(found.get('links', []))} links, "
        f"{found.get('weak_links', 0)} weak (LQI under {found.get('weak_lqi')}); scanned {when}"
    ]
    for link in sorted(found.get("links", []), key=lambda link: link["lqi"]):
        mark = "  WEAK" if link.get("weak") else ""
        lines.append(f"{names.get(link['source'], link['source'])} -> {names.get(link['target'], link['target'])}"
                     f" ({link['relationship']}): LQI {link['lqi']}{mark}")  # fmt: skip
    return "\n".join(lines)
