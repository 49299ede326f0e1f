"""Soak: the whole gateway under load and faults, counting every reading.

edged (a real ``edged run`` process) runs all four protocol adapters at
realistic rates (the demo's pymodbus and asyncua simulators, the simulated
Zigbee radio and BLE air) plus a high-rate Modbus load (bench/
modbus_throughput.py's responder), the demo's rules and a fast-firing rule,
and an MQTT uplink (QoS 1) to a mosquitto started here. For ``--minutes``
the script stops and starts the broker at random and kills edged with
SIGKILL a few times, restarting it at once. Then it stops edged with
SIGTERM, lets a drain-only edged empty the outbox, and compares what the
outbox accepted (its counters are committed with its rows, so they survive
the kills) with what a persistent-session subscriber received.

Printed, one per line: readings accepted, delivered, lost (must be 0),
duplicated, peak RSS, RSS after the first minute and at the end, for each
edged process that lived 5 minutes or more its RSS one minute after its
start and at its end (a leak shows there, not across restarts), CPU
seconds per 1000 readings, rule latency p99. The last line is ``lost``.

    python bench/soak.py [--minutes 10] [--kills 3] [--load 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import aiomqtt
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon_process import free_port  # noqa: E402
from tests.uplink.peers import Broker  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from modbus_to_mqtt import REGISTERS, UNITS, load_adapter  # noqa: E402


def soak_config(folder: Path, http_port: int, mqtt_port: int, modbus_port: int, opcua_port: int, load_port: int,
                load_rate: float) -> str:
    """The demo's configuration plus the high-rate Modbus load and a fast rule."""
    demo = string.Template((ROOT / "edged" / "demo" / "demo.yaml").read_text()).substitute(
        state_dir=folder / "state", http_port=http_port, mqtt_port=mqtt_port, modbus_port=modbus_port,
        opcua_port=opcua_port,
    )
    demo = demo.replace("id: edged-demo", "id: soak").replace("max_bytes: 64MiB", "max_bytes: 4GiB")
    connections = max(1, round(load_rate / (UNITS * REGISTERS * 2)))  # each polled twice a second
    load = "\n  - " + json.dumps(load_adapter(load_port, connections, 0.5)) + "\n"
    fast_rule = (
        "\n  - id: fast-toggle\n    description: fires on every poll of one load point (rule latency)\n"
        "    mode: queued\n    triggers: [{type: change, point: load/c0u1.r0}]\n"
        "    actions: [{type: write, point: sim/thermostat.setpoint, expression: \"20 + trigger % 5\"}]\n"
    )
    demo = demo.replace("\nrules:\n", load + "\nrules:\n" + fast_rule, 1)
    return demo


def drain_config(folder: Path, http_port: int, mqtt_port: int) -> str:
    return (
        f"gateway: {{id: soak, state_dir: {folder / 'state'}}}\n"
        f"status: {{http: {{host: 127.0.0.1, port: {http_port}}}}}\n"
        f"outbox: {{max_bytes: 4GiB}}\nuplink: {{type: mqtt, host: 127.0.0.1, port: {mqtt_port}}}\n"
    )


class Subscriber:
    """A persistent-session QoS 1 subscriber that counts distinct messages by their ``seq``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.rows: dict[tuple[int | None, int], int] = {}  # (gen, seq) -> readings (events count 1)
        self.messages = 0
        self.changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier="soak-counter", clean_session=False,
                                          max_queued_incoming_messages=0) as client:
                    await client.subscribe("edged/soak/data/#", qos=1)
                    await client.subscribe("edged/soak/events/#", qos=1)
                    await client.subscribe("edged/soak/commands/result", qos=1)
                    async for message in client.messages:
                        body = json.loads(message.payload)  # type: ignore[arg-type]
                        self.messages += 1
                        # The documented dedupe key: (gen, seq); a message sent again keeps both.
                        self.rows[(body.get("gen"), body["seq"])] = len(body["readings"]) if "readings" in body else 1
                        self.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)  # the broker is down: try again

    @property
    def delivered(self) -> int:
        return sum(self.rows.values())


@dataclasses.dataclass
class Life:
    """One edged process, from its start to its SIGKILL or the end of the run."""

    start: float
    end: float = 0.0
    rss_1min: float | None = None
    rss_end: float = 0.0
    by_minute: list[float] = dataclasses.field(default_factory=list)  # RSS at each full minute of its life

    @property
    def growth(self) -> float | None:
        """RSS growth from one minute after the start to the end; None for a life shorter than 5 minutes."""
        return None if self.rss_1min is None or self.end - self.start < 300 else self.rss_end - self.rss_1min


class Edged:
    """The edged process: started, killed and restarted; CPU and RSS sampled."""

    def __init__(self, config: Path, http_port: int) -> None:
        self.config = config
        self.http_port = http_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_done = 0.0  # CPU of processes that have ended
        self.cpu_now = 0.0
        self.rss_peak = 0.0
        self.lives: list[Life] = []  # one per process: RSS one minute after its start and at its end
        self.log = config.with_suffix(".log").open("ab")

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.lives.append(Life(time.monotonic()))

    def sample(self) -> float:
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(self.proc.pid)
            times = process.cpu_times()
            self.cpu_now = times.user + times.system
            rss = process.memory_info().rss / 2**20
            self.rss_peak = max(self.rss_peak, rss)
            life = self.lives[-1]
            life.end, life.rss_end = time.monotonic(), rss
            if life.end - life.start >= 60 * (len(life.by_minute) + 1):
                life.by_minute.append(rss)
            if life.rss_1min is None and life.end - life.start >= 60:
                life.rss_1min = rss
            return rss
        return 0.0

    def end(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.sample()
        self.proc.send_signal(sig)
        self.proc.wait(30)
        self.cpu_done += self.cpu_now
        self.cpu_now = 0.0

    @property
    def cpu(self) -> float:
        return self.cpu_done + self.cpu_now


async def status(session: aiohttp.ClientSession, port: int) -> dict | None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with session.get(f"http://127.0.0.1:{port}/api/status", timeout=aiohttp.ClientTimeout(total=5)) as r:
            return await r.json()
    return None


async def rule_p99(session: aiohttp.ClientSession, port: int) -> float | None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with session.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
            for line in (await r.text()).splitlines():
                if line.startswith('edged_rule_latency_seconds{quantile="0.99"}'):
                    return float(line.split()[-1])
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of edged during the run")
    parser.add_argument("--outages", type=int, default=3, help="broker stops during the run")
    parser.add_argument("--load", type=float, default=10_000, help="high-rate Modbus points/s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # The counting subscriber loses its broker on purpose; paho's complaints about that are noise here.
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None if isinstance(
        context.get("exception"), OSError) else loop.default_exception_handler(context))
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="edged-soak-"))
    (folder / "broker").mkdir()
    broker = Broker(folder / "broker")
    broker.start()
    sims = subprocess.Popen([sys.executable, "-m", "edged.demo.simulators", "--modbus-port", str(modbus_port := free_port()),
                             "--opcua-port", str(opcua_port := free_port())], stdout=subprocess.PIPE)
    load = subprocess.Popen([sys.executable, str(ROOT / "bench" / "modbus_throughput.py"), "--serve"],
                            stdout=subprocess.PIPE, text=True)
    load_port = int(load.stdout.readline())  # type: ignore[union-attr]
    while b"simulators ready" not in sims.stdout.readline():  # type: ignore[union-attr]
        pass
    http_port = free_port()
    config = folder / "soak.yaml"
    config.write_text(soak_config(folder, http_port, broker.port, modbus_port, opcua_port, load_port, args.load))
    edged = Edged(config, http_port)
    subscriber = Subscriber(broker.port)
    counting = asyncio.create_task(subscriber.run())
    duration = args.minutes * 60
    # Faults at random times in the middle 80 % of the run, never two at once.
    faults = sorted([("kill", rng.uniform(0.1, 0.9) * duration) for _ in range(args.kills)]
                    + [("outage", rng.uniform(0.1, 0.9) * duration) for _ in range(args.outages)], key=lambda f: f[1])
    rss_1min = rss_end = 0.0
    done = {"kill": 0, "outage": 0}
    p99s: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            edged.start()
            start = time.monotonic()
            broker_back_at: float | None = None
            while (elapsed := time.monotonic() - start) < duration:
                rss = edged.sample()
                if elapsed >= 60 and not rss_1min:
                    rss_1min = rss
                rss_end = rss or rss_end
                if broker_back_at is not None and elapsed >= broker_back_at:
                    broker.start()
                    broker_back_at = None
                    print(f"{elapsed:6.0f} s: broker started again", flush=True)
                while faults and faults[0][1] <= elapsed:
                    kind, _ = faults.pop(0)
                    if kind == "kill":
                        p99 = await rule_p99(session, http_port)
                        if p99 is not None:
                            p99s.append(p99)
                        edged.end(signal.SIGKILL)
                        edged.start()
                        done["kill"] += 1
                        print(f"{elapsed:6.0f} s: edged killed with SIGKILL and restarted", flush=True)
                    elif broker_back_at is None:
                        broker.stop()
                        done["outage"] += 1
                        broker_back_at = elapsed + rng.uniform(5, 30)
                        print(f"{elapsed:6.0f} s: broker stopped", flush=True)
                await asyncio.sleep(1.0)
            if broker_back_at is not None:
                broker.start()
            p99 = await rule_p99(session, http_port)
            if p99 is not None:
                p99s.append(p99)
            edged.end(signal.SIGTERM)
            # Drain what is left with an edged that only forwards.
            drain = folder / "drain.yaml"
            drain.write_text(drain_config(folder, http_port, broker.port))
            drainer = Edged(drain, http_port)
            drainer.start()
            async with asyncio.timeout(600):
                while (state := await status(session, http_port)) is None or state["outbox"]["depth"] > 0:
                    await asyncio.sleep(1.0)
            accepted = state["outbox"]["accepted"]
            dropped = state["outbox"]["dropped"]
            final = state["outbox"]
            # Every accepted reading in exactly one counter (they are committed with the rows, so across SIGKILLs too).
            unaccounted = accepted - sum(final.get(key) or 0 for key in (
                "acked", "depth", "dropped_full", "expired", "dead_letters", "discarded"))
            async with asyncio.timeout(120):
                while subscriber.delivered < accepted:
                    subscriber.changed.clear()
                    await subscriber.changed.wait()
            drainer.end(signal.SIGTERM)
    finally:
        counting.cancel()
        for proc in (edged.proc, sims, load):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        broker.stop()
    delivered = subscriber.delivered
    print(f"minutes: {args.minutes:g}; SIGKILLs: {done['kill']}; broker outages: {done['outage']}; state in {folder}")
    print(f"accepted: {accepted} readings (outbox drops: {dropped})")
    print(f"delivered: {delivered} readings")
    print(f"duplicated: {subscriber.messages - len(subscriber.rows)} messages")
    print(f"peak_rss: {edged.rss_peak:.1f} MiB")
    print(f"rss_after_1_min: {rss_1min:.1f} MiB")
    print(f"rss_at_end: {rss_end:.1f} MiB")
    for life in edged.lives:
        if life.growth is not None:
            print(f"rss_growth_of_one_process: {life.rss_1min:.1f} -> {life.rss_end:.1f} MiB "
                  f"over {(life.end - life.start) / 60:.1f} min (started at {life.start - edged.lives[0].start:.0f} s)")
            print(f"rss_by_minute_of_that_process: {' '.join(f'{r:.1f}' for r in life.by_minute)} MiB")
    print(f"cpu_per_1000_readings: {edged.cpu / max(1, accepted) * 1000:.4f} s")
    print(f"rule_latency_p99: {max(p99s) * 1000 if p99s else float('nan'):.2f} ms (worst of {len(p99s)} windows)")
    print(f"unaccounted: {unaccounted} readings (accepted minus acked, stored, dropped, expired, dead-lettered, discarded)")
    print(f"lost: {max(0, accepted - delivered)} readings")


if __name__ == "__main__":
    asyncio.run(main())
