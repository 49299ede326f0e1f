"""``edged demo``: the whole gateway against real protocol simulators.

It starts a pymodbus TCP server (an energy meter and a pump relay) and an
asyncua server (a press), the Modbus and OPC UA adapters' simulators, in a
child process (``edged.demo.peers``), then runs the daemon with
edged/demo/demo.yaml: those two plus a simulated thermostat, the simulated
Zigbee radio (a motion sensor, a lamp and a plug), the simulated BLE air
(BTHome, ATC and Ruuvi sensors, an iBeacon and a GATT thermostat), rules
linking them, and an MQTT uplink to 127.0.0.1:1883. The terminal shows rule
firings as they happen and a table of live values every few seconds; the
status page is at http://127.0.0.1:8080/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import string
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from edged.demo.screen import Screen, view_lines

if TYPE_CHECKING:
    from edged.view import GatewayView

TEMPLATE = Path(__file__).with_name("demo.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8080, help="status API and page port (default 8080)")
    parser.add_argument("--mqtt-port", type=int, default=1883, help="local MQTT broker port (default 1883)")
    parser.add_argument("--state-dir", type=Path, help="default: a new temporary folder")
    parser.add_argument("--table-every", type=float, default=5.0, help="seconds between tables of values; 0: none")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until Ctrl-C)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(folder: Path, state_dir: Path, http_port: int, mqtt_port: int, modbus_port: int, opcua_port: int) -> Path:
    text = string.Template(TEMPLATE.read_text()).substitute(
        state_dir=state_dir, http_port=http_port, mqtt_port=mqtt_port, modbus_port=modbus_port, opcua_port=opcua_port
    )
    path = folder / "demo.yaml"
    path.write_text(text)
    return path


def main(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="edged-demo-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(state_dir, state_dir, args.port, args.mqtt_port, free_port(), free_port())
    return asyncio.run(_demo(config, args)) or 0


async def _demo(config_path: Path, args: argparse.Namespace) -> int:
    from edged import logs
    from edged.config import load_config
    from edged.daemon import Daemon

    config = load_config(config_path)
    logs.setup(config.gateway.log_level, log_levels=config.gateway.log_levels)
    modbus_port = config.adapters[1].connections[0].port  # type: ignore[attr-defined]
    opcua_port = int(config.adapters[2].endpoint.rsplit(":", 1)[1].split("/")[0])  # type: ignore[attr-defined]
    simulators = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edged.demo.peers", "--modbus-port", str(modbus_port), "--opcua-port", str(opcua_port),
        "--until-stdin-closes",  # the peers stop when this process ends, even killed
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # Ctrl-C reaches edged only: the daemon stops before its peers do
    )
    try:
        assert simulators.stdout is not None
        async with asyncio.timeout(60):
            while b"simulators ready" not in await simulators.stdout.readline():
                if simulators.returncode is not None:
                    print("the protocol simulators failed to start", file=sys.stderr)
                    return 1
        print(f"edged demo: status page http://127.0.0.1:{args.port}/  API /api/devices  (Ctrl-C stops)", flush=True)
        print(f"            MQTT uplink to 127.0.0.1:{args.mqtt_port}; state and config in {config_path.parent}", flush=True)
        daemon = Daemon(config, config_path)
        async with asyncio.TaskGroup() as group:
            if args.table_every > 0:
                table = group.create_task(_show(daemon.view, args.table_every))
            if args.duration > 0:
                asyncio.get_running_loop().call_later(args.duration, daemon.stop)
            await daemon.run()
            if args.table_every > 0:
                table.cancel()
        return 0
    finally:
        if simulators.returncode is None:
            simulators.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await simulators.wait()
        if simulators.returncode is None:
            simulators.kill()


async def _show(view: GatewayView, every: float) -> None:
    """The live view every ``every`` seconds: in place on a terminal, as lines otherwise."""
    screen = Screen(sys.stdout)
    with screen.showing_logs():
        while True:
            await asyncio.sleep(every)
            screen.draw(view_lines(view))
