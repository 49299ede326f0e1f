"""``edged ble scan --seconds N``: what is in range, which family decodes it,
and what it says, so that a configuration can be written from it.

It listens with the adapter's own decoders (every family, or those of
``--formats``), for ``--seconds``, then prints one block per advertiser:
its address and name, the family and model, and its values with units. A
device whose frames are encrypted shows why it cannot be read, until its
key is given with ``--key ADDRESS=KEY`` (which then goes under ``keys:``).
``--simulated`` listens to the built-in simulated sensors instead of the
radio. Exit status: 0 listened, 2 bad arguments, 3 no usable Bluetooth
adapter.

Cheap to import: bleak and the parsers are imported only when a scan runs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from dataclasses import dataclass, field

from edged.adapters.ble.formats import NAMES, canonical

EXIT_ARGUMENTS = 2
EXIT_UNREACHABLE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="ble_command", required=True, metavar="COMMAND")
    scan = commands.add_parser(
        "scan", help="list the advertisers in range, their family and values",
        description="Listen to BLE advertisements and list each advertiser: address, name, the family that "
        "decodes it, its model and values. Exit status: 0 listened, 2 bad arguments, 3 no usable Bluetooth adapter.",
    )
    scan.add_argument("--seconds", type=float, default=10.0, help="how long to listen (default 10)")
    scan.add_argument("--adapter", help="BlueZ adapter such as hci0 (default: the system's)")
    scan.add_argument("--formats", help=f"families to decode, comma-separated (default all: {', '.join(NAMES)})")
    scan.add_argument("--key", action="append", default=[], metavar="ADDRESS=KEY",
                      help="a device's bind key (32 hex characters), to read its encrypted frames; repeatable")
    scan.add_argument("--all", action="store_true", help="list advertisers no family decodes too")
    scan.add_argument("--simulated", action="store_true", help="listen to edged's simulated sensors, not the radio")


@dataclass
class Seen:
    """What the scan heard from one advertiser."""

    address: str
    name: str | None = None
    rssi: int = 0
    heard: int = 0
    family: str | None = None
    model: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    problem: str | None = None


def main(args: argparse.Namespace) -> int:
    try:
        formats = _formats(args.formats)
        keys = _keys(args.key)
    except ValueError as exc:
        print(f"edged ble scan: {exc}", file=sys.stderr)
        return EXIT_ARGUMENTS
    if args.seconds <= 0:
        print("edged ble scan: --seconds must be above 0", file=sys.stderr)
        return EXIT_ARGUMENTS
    from edged.adapters.ble.adapter import STARTUP_ERRORS

    try:
        seen = asyncio.run(scan(args.seconds, formats, keys, adapter=args.adapter, simulated=args.simulated))
    except STARTUP_ERRORS as exc:
        print(f"edged ble scan: no usable Bluetooth adapter or BlueZ: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(render(seen, show_all=args.all), end="")
    return 0


def _formats(text: str | None) -> list[str]:
    if not text:
        return list(NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in canonical([n]) and not canonical([n])]
    if unknown or not names:
        raise ValueError(f"--formats: expected names among {', '.join(NAMES)}; got {text!r}")
    return canonical(names)


def _keys(pairs: list[str]) -> dict[str, bytes]:
    keys = {}
    for pair in pairs:
        address, _, key = pair.partition("=")
        if not re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}", address) or not re.fullmatch(
                r"[0-9A-Fa-f]{32}|[0-9A-Fa-f]{24}", key):  # fmt: skip
            raise ValueError(f"--key: expected ADDRESS=KEY such as A4:C1:38:02:83:F4=<32 hex characters>; got {address!r}=...")
        keys[address.upper()] = bytes.fromhex(key)
    return keys


async def scan(seconds: float, formats: list[str], keys: dict[str, bytes], adapter: str | None = None,
               simulated: bool = False, backend: object = None) -> dict[str, Seen]:  # fmt: skip
    """Listen for ``seconds``; return what each advertiser said, by address."""
    from bleak import BleakScanner

    from edged.adapters.ble import advert
    from edged.adapters.ble.backend import BleBackend

    if backend is None:
        if simulated:
            from edged.adapters.ble.simulator import demo_air

            backend = demo_air(interval=min(1.0, seconds / 4)).backend()
        else:
            backend = BleBackend()
    adverts = advert.Adverts(advert.chosen(formats), keys)
    seen: dict[str, Seen] = {}
    loop = asyncio.get_running_loop()

    def heard(device: object, adv: object) -> None:
        address = device.address.upper()  # type: ignore[attr-defined]
        entry = seen.setdefault(address, Seen(address))
        entry.name = adv.local_name or entry.name  # type: ignore[attr-defined]
        entry.rssi, entry.heard = adv.rssi, entry.heard + 1  # type: ignore[attr-defined]
        try:
            frames = adverts.decode(device, adv, loop.time())  # type: ignore[arg-type]
        except advert.AdvertError as exc:
            entry.problem = str(exc)
            entry.family = str(exc).partition(":")[0]
            return
        for frame in frames:
            entry.family = next((f.label for f in adverts.formats if f.claims(adv)), entry.family)  # type: ignore[arg-type]
            entry.model, entry.problem = frame.model, None
            for m in frame.measurements:
                entry.values[m.key] = f"{m.value} {m.unit}" if m.unit else str(m.value)

    bluez = {"adapter": adapter} if adapter else {}
    scanner = BleakScanner(heard, bluez=bluez, backend=backend.scanner)  # type: ignore[arg-type, attr-defined]
    await scanner.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await scanner.stop()
    return seen


def render(seen: dict[str, Seen], show_all: bool = False) -> str:
    """One block per advertiser, decoded ones first, strongest signal first."""
    rows = sorted(seen.values(), key=lambda s: (s.family is None, -s.rssi))
    out = []
    for entry in rows:
        if entry.family is None and not show_all:
            continue
        title = f"{entry.address}  {entry.name or '(no name)'}  rssi {entry.rssi} dBm, {entry.heard} advert(s)"
        out.append(title)
        if entry.family is None:
            out.append("  no family decodes it")
        else:
            out.append(f"  family: {entry.family}" + (f"  model: {entry.model}" if entry.model else ""))
        if entry.problem:
            out.append(f"  problem: {entry.problem}")
        out.extend(f"  {key}: {value}" for key, value in entry.values.items())
    hidden = sum(1 for s in seen.values() if s.family is None)
    if hidden and not show_all:
        out.append(f"({hidden} other advertiser(s) no family decodes; --all lists them)")
    if not out:
        out.append("nothing heard")
    return "\n".join(out) + "\n"
