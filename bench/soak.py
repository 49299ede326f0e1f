"""Soak: the whole gateway under load and faults, counting every reading.

edged (a real ``edged run`` process) runs all four protocol adapters at
realistic rates (the demo's pymodbus and asyncua simulators, the simulated
Zigbee radio and BLE air) plus a high-rate Modbus load (bench/
modbus_throughput.py's responder), the demo's rules and a fast-firing rule,
and an MQTT uplink (QoS 1) to a mosquitto started here. For ``--minutes``
the script injects faults at random (seeded) times:

- broker outages: the broker is stopped for 5-30 s;
- SIGKILLs: edged is killed and restarted at once;
- a disk-full period: the state directory (the outbox's database) is a
  2 GiB tmpfs mounted for the run; a filler file takes all its space, and
  the broker is stopped so that the outbox must grow (SQLite first reuses
  the free pages it has). edged must report the failing commits
  (``commit_failing`` in /api/status, a reason in /health) and keep the
  readings in memory; ``--disk-full-seconds`` after the first report the
  filler is deleted and the broker started, and edged must store them. This
  needs root (to mount); otherwise the fault is skipped, and said so;
- a wall-clock step: edged runs under libfaketime (``faketime`` package)
  with only its wall clock faked, and while a broker outage holds a
  backlog its clock jumps forward by ``--clock-step`` (more than the
  outbox's ``ttl`` of 1 h), as on a board without a real-time clock whose
  time syncs after boot. The step is kept for the rest of the run (edged
  processes started later start with it). Nothing may expire.

Then it stops edged with SIGTERM, lets a drain-only edged empty the outbox,
and compares what the outbox accepted (its counters are committed with its
rows, so they survive the kills) with what a persistent-session subscriber
received.

Printed, one per line: the faults and when they came, readings accepted,
delivered, duplicated, peak RSS, RSS after the first minute and at the end,
for each edged process that lived 5 minutes or more its RSS one minute
after its start and at its end (a leak shows there, not across restarts),
CPU seconds per 1000 readings, rule latency p99, readings expired by
``ttl`` (must be 0), unaccounted readings in the outbox's counters (must
be 0), and last ``lost`` (must be 0).

    python bench/soak.py [--minutes 10] [--kills 3] [--outages 3] [--load 10000] [--seed 1]
                         [--disk-full-seconds 20] [--clock-step 2d]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import errno
import json
import logging
import math
import os
import random
import shutil
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

from edged.fields import parse_duration  # noqa: E402
from tests.daemon_process import free_port  # noqa: E402
from tests.uplink.peers import Broker  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from modbus_to_mqtt import REGISTERS, UNITS, load_adapter  # noqa: E402

TTL = 3600.0  # the outbox's ttl in the soak: a wall-clock step larger than this must expire nothing
STATE_DISK = "2g"  # the tmpfs the state directory is on (the outbox grows by a few tens of MB a minute of outage)
DISK_FULL_WAIT = 120.0  # seconds a full disk waits for edged's first failing commit


def soak_config(folder: Path, http_port: int, mqtt_port: int, modbus_port: int, opcua_port: int, load_port: int,
                load_rate: float) -> str:
    """The demo's configuration plus the high-rate Modbus load and a fast rule."""
    demo = string.Template((ROOT / "edged" / "demo" / "demo.yaml").read_text()).substitute(
        state_dir=folder / "state", http_port=http_port, mqtt_port=mqtt_port, modbus_port=modbus_port,
        opcua_port=opcua_port,
    )
    demo = demo.replace("id: edged-demo", "id: soak").replace("max_bytes: 64MiB", f"max_bytes: 4GiB\n  ttl: {TTL:g}s")
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
        f"outbox: {{max_bytes: 4GiB, ttl: {TTL:g}s}}\nuplink: {{type: mqtt, host: 127.0.0.1, port: {mqtt_port}}}\n"
    )


class Subscriber:
    """A persistent-session QoS 1 subscriber that counts distinct messages by their ``seq``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.rows: dict[tuple[int | None, int], int] = {}  # (gen, seq) -> readings (events count 1)
        self.messages = 0
        self.ahead = 0.0  # the most a reading's time stamp was ahead of the real clock on arrival
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
                        if body.get("readings"):
                            self.ahead = max(self.ahead, body["readings"][-1][2] - time.time())
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


class StateDisk:
    """The state directory on a tmpfs of its own, which a filler file can make full."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.filler = folder / "filler"
        self.mounted = False

    def mount(self) -> str | None:
        """Mount the tmpfs on the (new) folder; why not, when it cannot be."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return "mounting a tmpfs for the state directory needs root"
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STATE_DISK},mode=0700", "edged-soak", str(self.folder)],
                                check=False, capture_output=True, text=True)
        if result.returncode != 0:
            return f"cannot mount a tmpfs: {result.stderr.strip() or result.returncode}"
        self.mounted = True
        return None

    def fill(self) -> int:
        """Append to the filler until the file system has no room left; the bytes added."""
        added = 0
        with self.filler.open("ab", buffering=0) as file:
            for size in (64 * 2**20, 2**20, 4096):
                chunk = bytes(size)
                try:
                    while written := file.write(chunk):
                        added += written
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise  # a full disk ends this size; anything else is a fault of the soak
        return added

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self, keep: Path) -> None:
        """Copy what edged left in the state directory to ``keep`` (to look at after the run), then unmount."""
        if not self.mounted:
            return
        self.free()
        shutil.copytree(self.folder, keep, dirs_exist_ok=True)
        subprocess.run(["umount", str(self.folder)], check=True)
        self.mounted = False


def libfaketime() -> Path | None:
    """The installed libfaketime library (Debian package ``libfaketime``, pulled in by ``faketime``)."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        listing = subprocess.run(["dpkg", "-L", "libfaketime"], capture_output=True, text=True, check=True).stdout
        for line in listing.splitlines():
            if line.endswith("/faketime/libfaketime.so.1"):
                return Path(line)
    return None


class WallClock:
    """The wall clock the edged processes see: the real one plus an offset the soak can step.

    libfaketime reads the offset from a file, so running processes (within a second) and
    those started later follow it; their monotonic clock is left alone, as on a board whose
    time synchronises after boot. Two settings keep edged's figures those of a real run:
    the file is read at most once a second (read at every call, ``FAKETIME_NO_CACHE``,
    costs 3 us per ``time.time()``), and libfaketime's rework of timed waits on monotonic
    condition variables is off (``FAKETIME_FORCE_MONOTONIC_FIX=0``: with it, libfaketime
    0.9.10 turns the waits for Python's GIL into spinning, and edged takes twice its CPU
    per reading and rule latencies of tens of milliseconds). Timed waits stay exact with
    both settings, before and after a step. Python's ``time.sleep`` fails (EINVAL) under
    libfaketime with ``FAKETIME_DONT_FAKE_MONOTONIC``; edged does not call it."""

    def __init__(self, folder: Path, library: Path) -> None:
        self.file = folder / "faketime"
        self.library = library
        self.offset = 0.0
        self._write()

    def env(self) -> dict[str, str]:
        return {**os.environ, "LD_PRELOAD": str(self.library), "FAKETIME_TIMESTAMP_FILE": str(self.file),
                "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_CACHE_DURATION": "1",
                "FAKETIME_FORCE_MONOTONIC_FIX": "0"}

    def step(self, seconds: float) -> None:
        self.offset += seconds
        self._write()

    def _write(self) -> None:
        new = self.file.with_suffix(".new")
        new.write_text(f"{self.offset:+.0f}\n")
        new.replace(self.file)  # a reader never sees half a file


class Edged:
    """The edged process: started, killed and restarted; CPU and RSS sampled."""

    def __init__(self, config: Path, http_port: int, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.http_port = http_port
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_done = 0.0  # CPU of processes that have ended
        self.cpu_now = 0.0
        self.rss_peak = 0.0
        self.lives: list[Life] = []  # one per process: RSS one minute after its start and at its end
        self.log = config.with_suffix(".log").open("ab")

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(self.config)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
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


async def stamped_ahead(session: aiohttp.ClientSession, port: int) -> float | None:
    """How far ahead of the real clock edged stamps its readings now (a load point polled twice a second)."""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, KeyError, TypeError, ValueError):
        async with session.get(f"http://127.0.0.1:{port}/api/devices/load/c0u1",
                               timeout=aiohttp.ClientTimeout(total=5)) as r:
            stamp = (await r.json())["points"]["r0"]["ts"]
            return datetime.datetime.fromisoformat(stamp).timestamp() - time.time()
    return None


async def rule_p99(session: aiohttp.ClientSession, port: int) -> float | None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with session.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
            for line in (await r.text()).splitlines():
                if line.startswith('edged_rule_latency_seconds{quantile="0.99"}'):
                    return float(line.split()[-1])
    return None


@dataclasses.dataclass
class DiskFull:
    """A disk-full period and what edged's /api/status showed of it (times in seconds of the run)."""

    start: float
    seconds: float
    filler: int = 0  # bytes it took to fill the disk
    freed: float | None = None
    failing_from: float | None = None  # first seen with commit_failing (or open_failing) = 1
    reason: str = ""  # the /health reason seen then
    recovered: float | None = None  # first seen with both 0 after the filler went
    killed: bool = False  # edged was SIGKILLed between the start and the recovery

    async def watch(self, session: aiohttp.ClientSession, port: int, elapsed: float) -> None:
        state = await status(session, port)
        if state is None or "outbox" not in state:
            return  # edged is starting (after a SIGKILL)
        if state["outbox"].get("commit_failing") or state["outbox"].get("open_failing"):
            if self.failing_from is None:
                self.failing_from = elapsed
                self.reason = "; ".join(state["health"].get("reasons", []))
                print(f"{elapsed:6.0f} s: edged reports: {self.reason}", flush=True)
        elif self.freed is not None and self.failing_from is not None and self.recovered is None:
            self.recovered = elapsed
            print(f"{elapsed:6.0f} s: edged commits again", flush=True)

    def over(self, elapsed: float) -> bool:
        """Time to delete the filler: ``seconds`` after edged first reported failing commits
        (SQLite first fills the free pages it has), or after ``DISK_FULL_WAIT`` without."""
        if self.failing_from is not None:
            return elapsed >= self.failing_from + self.seconds
        return elapsed >= self.start + DISK_FULL_WAIT

    @property
    def watching(self) -> bool:
        return self.recovered is None and (self.freed is None or self.failing_from is not None)

    def summary(self) -> str:
        if self.failing_from is None:
            return f"commits never failed in the {DISK_FULL_WAIT:g} s the disk was full"
        line = f"commits failed from {self.failing_from - self.start:.0f} s into the period ({self.reason})"
        if self.recovered is None or self.freed is None:
            return line + "; they did not work again before the end of the run"
        line += f", and worked again {self.recovered - self.freed:.0f} s after the filler was deleted"
        return line + (" (in an edged restarted after a SIGKILL meanwhile)" if self.killed else "")


@dataclasses.dataclass
class ClockStep:
    """A forward step of edged's wall clock during a broker outage (times in seconds of the run)."""

    seconds: float
    at: float = math.inf  # when it is made (the broker goes down 10 s before, to hold a backlog)
    made: bool = False
    backlog: int | None = None  # readings in the outbox when it was made
    ahead_before: float | None = None  # how far ahead of the real clock edged stamped readings
    ahead_after: float | None = None
    uptime: tuple[float, float] | None = None  # /api/status uptime just before and after

    async def make(self, clock: WallClock, session: aiohttp.ClientSession, port: int, elapsed: float) -> None:
        before = await status(session, port)
        self.ahead_before = await stamped_ahead(session, port)
        clock.step(self.seconds)
        self.made = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):  # the load point is read twice a second
                while (ahead := await stamped_ahead(session, port)) is None or ahead < self.seconds - 60:
                    await asyncio.sleep(0.5)
                self.ahead_after = ahead
        after = await status(session, port)
        if before and after and "outbox" in before:
            self.backlog = before["outbox"]["depth"]
            self.uptime = (before["uptime"], after["uptime"])
        print(f"{elapsed:6.0f} s: edged's wall clock stepped {self.seconds:+g} s with {self.backlog} readings waiting; "
              f"{self.seen()} (before: {'?' if self.ahead_before is None else f'{self.ahead_before:+.1f} s'})", flush=True)

    def seen(self) -> str:
        if self.ahead_after is None:
            return "edged's readings did not show it within 15 s (is libfaketime without effect?)"
        return f"edged stamps its readings {self.ahead_after / 86400:.2f} d ahead of the real clock"

    def summary(self, received_ahead: float) -> str:
        """``received_ahead``: the most the subscriber found a reading's stamp ahead of the real clock."""
        if not self.made:
            return f"clock step of {self.seconds:+g} s not made (the run ended first)"
        line = (f"edged's wall clock {self.seconds:+g} s at {self.at:.0f} s, kept to the end, during a broker outage "
                f"with {self.backlog} readings waiting; {self.seen()} after it, and the subscriber received readings "
                f"stamped up to {received_ahead / 86400:.2f} d ahead, so the data age of those readings means nothing")
        if self.uptime is not None:
            line += f"; /api/status uptime went from {self.uptime[0]:.0f} to {self.uptime[1]:.0f} s"
        return line


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of edged during the run")
    parser.add_argument("--outages", type=int, default=3, help="broker stops during the run")
    parser.add_argument("--load", type=float, default=10_000, help="high-rate Modbus points/s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--disk-full-seconds", type=float, default=None,
                        help="seconds the state disk stays full after edged reports failing commits "
                             "(default 20 in a run of 2 minutes or more; 0: no disk-full period)")
    parser.add_argument("--clock-step", default=None,
                        help="forward step of edged's wall clock during an outage, e.g. 2d "
                             f"(more than the ttl, {TTL:g} s; default 2d in a run of 2 minutes or more; 0: none)")
    args = parser.parse_args()
    long_run = args.minutes >= 2
    if args.disk_full_seconds is None:
        args.disk_full_seconds = 20.0 if long_run else 0.0
    try:
        args.clock_step = parse_duration(args.clock_step or ("2d" if long_run else "0"))
    except ValueError as exc:
        parser.error(f"--clock-step: {exc}")
    if 0 < args.clock_step <= TTL:
        parser.error(f"--clock-step must be more than the outbox's ttl ({TTL:g} s), or 0")
    return args


def injected(times: dict[str, list[float]], kind: str, elapsed: float) -> None:
    times.setdefault(kind, []).append(elapsed)


async def main() -> None:
    args = parse_args()
    # The counting subscriber loses its broker on purpose; paho's complaints about that are noise here.
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None if isinstance(
        context.get("exception"), OSError) else loop.default_exception_handler(context))
    rng = random.Random(args.seed)
    extra = random.Random(f"soak-{args.seed}")  # the disk-full and clock-step faults; rng's draws stay as they were
    folder = Path(tempfile.mkdtemp(prefix="edged-soak-"))
    (folder / "broker").mkdir()
    disk = StateDisk(folder / "state")
    skipped: dict[str, str] = {}
    if args.disk_full_seconds > 0 and (why := disk.mount()) is not None:
        skipped["disk full"] = why
    clock: WallClock | None = None
    if args.clock_step > 0:
        if (library := libfaketime()) is None:
            skipped["clock step"] = "libfaketime is not installed (make system-deps installs faketime)"
        else:
            clock = WallClock(folder, library)
    for fault, why in skipped.items():
        print(f"{fault}: skipped, {why}", flush=True)
    broker = Broker(folder / "broker")
    broker.start()
    sims = subprocess.Popen([sys.executable, "-m", "edged.demo.peers", "--modbus-port", str(modbus_port := free_port()),
                             "--opcua-port", str(opcua_port := free_port())], stdout=subprocess.PIPE)
    load = subprocess.Popen([sys.executable, str(ROOT / "bench" / "modbus_throughput.py"), "--serve"],
                            stdout=subprocess.PIPE, text=True)
    load_port = int(load.stdout.readline())  # type: ignore[union-attr]
    while b"simulators ready" not in sims.stdout.readline():  # type: ignore[union-attr]
        pass
    http_port = free_port()
    config = folder / "soak.yaml"
    config.write_text(soak_config(folder, http_port, broker.port, modbus_port, opcua_port, load_port, args.load))
    env = clock.env() if clock is not None else None
    edged = Edged(config, http_port, env)
    drainer: Edged | None = None
    subscriber = Subscriber(broker.port)
    counting = asyncio.create_task(subscriber.run())
    duration = args.minutes * 60
    # Faults at random times in the middle 80 % of the run, never two outages at once.
    faults = sorted([("kill", rng.uniform(0.1, 0.9) * duration) for _ in range(args.kills)]
                    + [("outage", rng.uniform(0.1, 0.9) * duration) for _ in range(args.outages)], key=lambda f: f[1])
    # The disk-full period and the clock step early enough to see edged recover before the end.
    disk_full = DiskFull(extra.uniform(0.1, 0.5) * duration, args.disk_full_seconds) if disk.mounted else None
    step = ClockStep(args.clock_step) if clock is not None else None
    if disk_full is not None:
        faults.append(("disk full", disk_full.start))
    if step is not None:
        faults.append(("clock step", extra.uniform(0.1, 0.7) * duration))
    faults.sort(key=lambda f: f[1])
    rss_1min = rss_end = 0.0
    times: dict[str, list[float]] = {}
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
                if step is not None and not step.made and broker_back_at is not None and elapsed >= step.at:
                    await step.make(clock, session, http_port, elapsed)  # type: ignore[arg-type]
                if disk_full is not None and disk_full.filler:
                    if disk_full.freed is None and disk_full.over(elapsed):
                        disk.free()
                        disk_full.freed = broker_back_at = elapsed
                        print(f"{elapsed:6.0f} s: filler deleted", flush=True)
                    elif disk_full.freed is None:
                        await asyncio.to_thread(disk.fill)  # whatever edged freed is taken again
                    if disk_full.watching:
                        await disk_full.watch(session, http_port, elapsed)
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
                        if disk_full is not None and disk_full.filler and disk_full.recovered is None:
                            disk_full.killed = True
                        injected(times, "SIGKILL", elapsed)
                        print(f"{elapsed:6.0f} s: edged killed with SIGKILL and restarted", flush=True)
                    elif kind == "disk full":
                        assert disk_full is not None
                        disk_full.filler = await asyncio.to_thread(disk.fill)
                        disk_full.start = elapsed
                        if broker_back_at is None:
                            broker.stop()
                        broker_back_at = math.inf  # until the filler goes: the outbox must grow
                        injected(times, "disk full", elapsed)
                        print(f"{elapsed:6.0f} s: state disk full ({disk_full.filler / 2**20:.0f} MiB of filler), "
                              "broker stopped until the filler goes", flush=True)
                    elif broker_back_at is not None:
                        if kind == "clock step":  # it needs an outage of its own: after this one
                            faults.append((kind, elapsed + 5))
                            faults.sort(key=lambda f: f[1])
                    else:
                        broker.stop()
                        if kind == "clock step":
                            assert step is not None
                            step.at = elapsed + 10  # the outbox holds 10 s of readings by then
                            broker_back_at = step.at + extra.uniform(10, 20)
                            injected(times, "clock step", step.at)
                            print(f"{elapsed:6.0f} s: broker stopped (a wall-clock step comes in 10 s)", flush=True)
                        else:
                            broker_back_at = elapsed + rng.uniform(5, 30)
                            injected(times, "broker outage", elapsed)
                            print(f"{elapsed:6.0f} s: broker stopped", flush=True)
                await asyncio.sleep(1.0)
            if broker_back_at is not None:
                broker.start()
            if disk_full is not None and disk_full.filler and disk_full.freed is None:
                disk.free()
                disk_full.freed = time.monotonic() - start
            # edged retries a failing commit after up to 30 s: see it work again before it is stopped.
            while disk_full is not None and disk_full.watching and (elapsed := time.monotonic() - start) < duration + 45:
                await disk_full.watch(session, http_port, elapsed)
                await asyncio.sleep(1.0)
            p99 = await rule_p99(session, http_port)
            if p99 is not None:
                p99s.append(p99)
            edged.end(signal.SIGTERM)
            # Drain what is left with an edged that only forwards.
            drain = folder / "drain.yaml"
            drain.write_text(drain_config(folder, http_port, broker.port))
            drainer = Edged(drain, http_port, env)
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
        for proc in (edged.proc, drainer.proc if drainer else None, sims, load):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        broker.stop()
        disk.unmount(keep=folder / "state.kept")
    delivered = subscriber.delivered
    summary = [f"minutes: {args.minutes:g}"]
    for kind in ("SIGKILL", "broker outage", "disk full", "clock step"):
        at = times.get(kind, [])
        summary.append(f"{kind}: {len(at)}" + (f" at {', '.join(f'{t:.0f}' for t in at)} s" if at else ""))
    print("; ".join(summary) + f"; state in {folder}")
    if disk_full is not None and disk_full.freed is not None:
        print(f"disk_full: the {STATE_DISK} tmpfs of the state dir full from {disk_full.start:.0f} to {disk_full.freed:.0f} s "
              f"(with the broker down, so that the outbox grows); {disk_full.summary()}")
    if step is not None:
        print(f"clock_step: {step.summary(subscriber.ahead)}")
    for fault, why in skipped.items():
        print(f"{fault.replace(' ', '_')}: skipped, {why}")
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
    print(f"expired: {final.get('expired')} readings (ttl {TTL:g} s)")
    print(f"unaccounted: {unaccounted} readings (accepted minus acked, stored, dropped, expired, dead-lettered, discarded)")
    print(f"lost: {max(0, accepted - delivered)} readings")


if __name__ == "__main__":
    asyncio.run(main())
