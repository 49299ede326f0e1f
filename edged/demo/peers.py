"""The demo's protocol peers, run together in one process: the Modbus energy
plant (``edged.adapters.modbus.simulator.EnergyPlant``) and the OPC UA press
(``edged.adapters.opcua.simulator.Press``), real protocol servers on loopback
that edged talks to as it would to devices. ``edged demo`` and the soak
benchmark start it.

Run as ``python -m edged.demo.peers --modbus-port P --opcua-port Q``; it
prints ``simulators ready`` once both listen, moves both on every
``--period`` seconds, and stops on SIGTERM or SIGINT, or, with
``--until-stdin-closes``, when its standard input closes: the demo holds
the other end of that pipe, so the peers stop with the demo however it
ends, even killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys

from edged.adapters.modbus.simulator import EnergyPlant
from edged.adapters.opcua.simulator import Press

READY = "simulators ready"


async def serve(modbus_port: int, opcua_port: int, period: float = 1.0, stop: asyncio.Event | None = None) -> None:
    """Serve the plant and the press until ``stop`` is set."""
    stop = stop or asyncio.Event()
    rng = random.Random(7)
    plant, press = EnergyPlant(), Press(opcua_port)
    await plant.start(modbus_port)
    try:
        await press.start()
        try:
            print(READY, flush=True)
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                await plant.step(rng, period)
                await press.step(rng, loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)
        finally:
            await press.stop()
    finally:
        await plant.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="edged's demo protocol simulators (loopback only)")
    parser.add_argument("--modbus-port", type=int, default=5020)
    parser.add_argument("--opcua-port", type=int, default=4840)
    parser.add_argument("--period", type=float, default=1.0)
    parser.add_argument("--until-stdin-closes", action="store_true", help="also stop when standard input reaches its end")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("asyncua", "pymodbus"):
        logging.getLogger(name).setLevel(logging.ERROR)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.until_stdin_closes:
            loop.add_reader(sys.stdin.fileno(), _read_stdin, loop, stop)
        await serve(args.modbus_port, args.opcua_port, args.period, stop)

    asyncio.run(run())


def _read_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Discard what arrives on standard input; at its end, stop."""
    if not os.read(sys.stdin.fileno(), 4096):
        loop.remove_reader(sys.stdin.fileno())
        stop.set()


if __name__ == "__main__":
    main()
