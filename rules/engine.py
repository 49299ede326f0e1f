"""The rules engine: triggers in, runs of actions out.

Every trigger that reads a point is indexed by that point, so a reading
batch from the Hub costs one dict lookup per reading and wakes only the
rules that depend on it; the check is synchronous and does no I/O, which is
why it runs inside the Hub's listener call. A rule that fires starts a run
(a task owned by the engine) according to its mode.

Contract for the daemon: ``RulesEngine(rules, hub, state_dir, timezone,
clock=None)``; ``await run()`` until cancelled; ``reload(rules)`` keeps the
state (running actions, timers, trigger memory) of every rule whose
configuration is unchanged. Its figures (``stats()``): firings, failed
actions, rules paused, the last 50 firings, and latencies (seconds from a
reading reaching the Hub to the command it caused being handed to the Hub's
writer).

Every firing runs in a task of its own, so rules that trigger each other
(rule A writes what wakes rule B, which writes what wakes A) never hold the
event loop; but they would spin as fast as it goes. A rule woken more than
``FEEDBACK_LIMIT`` times within ``FEEDBACK_WINDOW`` seconds by what rules
did (a point a rule wrote within that window, a rule's command result or
event) is paused for ``FEEDBACK_PAUSE`` seconds, logged and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edged.hub import Hub
from edged.model import Command, CommandResult, DeviceEvent, Event, Origin, Reading, RuleEvent, Value
from edged.part import Histogram, State, counter, histogram
from edged.rules.action import Firing, Program, Run, Saved, StopRun, resume_frames
from edged.rules.clock import Clock, RealClock
from edged.rules.condition import ExpressionFailed, Scope, compile_conditions
from edged.rules.config import Rule
from edged.rules.schedule import Schedule
from edged.rules.store import TimerStore
from edged.rules.trigger import ThresholdState, TriggerState, Verdict, make_trigger
from edged.tasks import TaskSet

log = logging.getLogger("edged.rules")

FEEDBACK_LIMIT = 20  # firings caused by rules' own doings ...
FEEDBACK_WINDOW = 1.0  # ... within this many seconds pause the rule ...
FEEDBACK_PAUSE = 60.0  # ... for this long


class Binding:
    """One trigger wired to what it fires: a rule, or a run's ``wait``."""

    __slots__ = ("engine", "fire", "key", "rule", "scheduler", "timer", "trigger")

    def __init__(self, engine: RulesEngine, trigger: TriggerState, fire: Callable[[Firing], None],
                 rule: RuleRuntime | None = None, key: str | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.trigger = trigger
        self.fire = fire
        self.rule = rule  # set for a rule's own triggers: the loop guard applies
        self.key = key  # set when a ``for:`` timer is saved across restarts
        self.timer: asyncio.Task[None] | None = None
        self.scheduler: asyncio.Task[None] | None = None

    def on_reading(self, reading: Reading, received: float) -> None:
        verdict = self.trigger.on_reading(reading)
        if verdict is Verdict.NONE:
            return
        if verdict is Verdict.DISARM:
            self.disarm()
            return
        if self.rule is not None:
            if self.rule.is_echo(reading):
                self.engine.loops_prevented += 1
                return
            written = self.engine.rule_writes.get((reading.device_id, reading.key))
            if written is not None and self.engine.clock.now() - written <= FEEDBACK_WINDOW:
                self.rule.woken_by_rules()
        firing = Firing(self.trigger.label, reading.value, reading.ts, received)
        if verdict is Verdict.FIRE:
            self.fire(firing)
        else:
            self.arm(self.engine.clock.now() + self.trigger.for_, firing)

    def on_event(self, event: Event) -> None:
        if not self.trigger.on_event(event):
            return
        if self.rule is not None:
            if self.rule.caused(event):
                self.engine.loops_prevented += 1
                return
            if isinstance(event, RuleEvent) or (isinstance(event, CommandResult) and event.command.origin is Origin.RULE):
                self.rule.woken_by_rules()
        self.fire(Firing(self.trigger.label, _event_value(event), self.engine.clock.now()))

    def arm(self, due: float, firing: Firing) -> None:
        self.disarm()
        if self.key is not None and self.rule is not None:
            self.engine.store.put(self.key, {
                "kind": "for", "rule": self.rule.id, "fingerprint": self.rule.fingerprint,
                "trigger": self.key.rsplit("/", 1)[1], "due": due, "label": firing.trigger, "value": firing.value,
            })  # fmt: skip
        self.timer = self.engine.tasks.spawn(self._after(due, firing), name=f"for {firing.trigger}")

    async def _after(self, due: float, firing: Firing) -> None:
        await self.engine.clock.sleep_until(due)
        self.timer = None
        if self.key is not None:
            self.engine.store.remove(self.key)
        self.fire(Firing(firing.trigger, firing.value, self.engine.clock.now()))

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            if self.key is not None:
                self.engine.store.remove(self.key)

    async def _schedule(self) -> None:
        schedule = self.trigger.schedule
        assert schedule is not None
        clock = self.engine.clock
        catch_up = getattr(schedule.config, "catch_up", None) if self.rule is not None and self.key is not None else None
        if catch_up is not None:
            self._catch_up(schedule, catch_up)
        while True:
            due = schedule.next_after(clock.now())
            await clock.sleep_until(due)
            if catch_up is not None:
                self._fired(due)
            self.fire(Firing(self.trigger.label, None, due))

    @property
    def _schedule_key(self) -> str:
        assert self.key is not None
        return "schedule/" + self.key.split("/", 1)[1]  # for/<rule>/<trigger> -> schedule/<rule>/<trigger>

    def _fired(self, due: float) -> None:
        """Remember the latest firing (or, first, that the engine ran at ``due``) for a later catch-up."""
        assert self.rule is not None
        self.engine.store.put(self._schedule_key, {
            "kind": "schedule", "rule": self.rule.id, "fingerprint": self.rule.fingerprint, "fired": due,
        })  # fmt: skip

    def _catch_up(self, schedule: Schedule, catch_up: float) -> None:
        """Fire once for a firing missed while the gateway was down, if it was at most ``catch_up`` ago."""
        assert self.rule is not None
        now = self.engine.clock.now()
        saved = self.engine.store.entries.get(self._schedule_key)
        if saved is None or saved.get("fingerprint") != self.rule.fingerprint:
            self._fired(now)  # nothing known of this rule before now (new, or changed): nothing to catch up
            return
        missed = schedule.last_at_or_before(now)
        if missed > float(saved["fired"]) and now - missed <= catch_up:
            log.info("rule %s: %s was missed at %s while the gateway was down; firing now", self.rule.id,
                     self.trigger.label, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(missed)) + " UTC",
                     extra={"rule": self.rule.id})  # fmt: skip
            self._fired(missed)
            self.fire(Firing(self.trigger.label, None, missed))

    def start(self) -> None:
        if self.trigger.schedule is not None and self.scheduler is None:
            self.scheduler = self.engine.tasks.spawn(self._schedule(), name=self.trigger.label)

    def stop(self) -> None:
        """Cancel timers and schedules (a saved ``for:`` timer is kept only at shutdown)."""
        if self.scheduler is not None:
            self.scheduler.cancel()
            self.scheduler = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            if self.key is not None and not self.engine.stopping:
                self.engine.store.remove(self.key)


def _event_value(event: Event) -> Value:
    """What ``trigger`` holds when an event fires a rule: a command's status, whether a device
    is online, a device event's severity."""
    if isinstance(event, CommandResult):
        return event.status.value
    if isinstance(event, DeviceEvent):
        return event.severity
    return getattr(event, "online", None)


def fingerprint(rule: Rule) -> str:
    return hashlib.sha256(rule.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


class RuleRuntime:
    """A rule's live state: trigger memory, runs in progress, queue, loop guard."""

    def __init__(self, engine: RulesEngine, config: Rule) -> None:
        self.engine = engine
        self.config = config
        self.id = config.id
        self.fingerprint = fingerprint(config)
        self.program = Program(config.actions)
        self.check = compile_conditions(config.conditions)
        self.bindings = [
            Binding(engine, make_trigger(t, engine.hub, engine.timezone), self.fire, self, f"for/{self.id}/{index}")
            for index, t in enumerate(config.triggers)
        ]
        self.runs: dict[asyncio.Task[None], dict[str, Any]] = {}
        self.queue: deque[Firing] = deque()
        self.last_started = -math.inf
        self.debouncer: asyncio.Task[None] | None = None
        self._echoes: dict[tuple[str, str], tuple[object, float]] = {}
        self._commands: deque[str] = deque(maxlen=32)
        self._feedback: deque[float] = deque()  # when rules' doings woke this rule, within the window
        self.paused_until = -math.inf

    # -- loop guard ------------------------------------------------------

    def note_write(self, command: Command) -> None:
        """Remember a write so its echo from the device does not trigger this rule again."""
        now = self.engine.clock.now()
        self._echoes[(command.device_id, command.key)] = (command.value, now + self.config.loop_guard)
        self.engine.rule_writes[(command.device_id, command.key)] = now
        self._commands.append(command.id)
        if self.engine.on_command is not None:
            self.engine.on_command(self.id, command)

    def is_echo(self, reading: Reading) -> bool:
        echo = self._echoes.get((reading.device_id, reading.key))
        if echo is None:
            return False
        value, until = echo
        if self.engine.clock.now() > until:
            del self._echoes[(reading.device_id, reading.key)]
            return False
        if value != reading.value:
            return False
        del self._echoes[(reading.device_id, reading.key)]
        log.debug("rule %s: %s.%s=%r echoes its own write; not triggered", self.id, reading.device_id, reading.key,
                  reading.value, extra={"rule": self.id})  # fmt: skip
        return True

    def caused(self, event: Event) -> bool:
        """Whether ``event`` came from this rule (its own command's result or its own event)."""
        if isinstance(event, CommandResult):
            return event.command.id in self._commands
        return isinstance(event, RuleEvent) and event.rule_id == self.id

    def woken_by_rules(self) -> None:
        """Note that what rules did woke this rule; pause it if that happens too often."""
        now = self.engine.clock.now()
        if now < self.paused_until:
            return
        window = self._feedback
        window.append(now)
        while now - window[0] > FEEDBACK_WINDOW:
            window.popleft()
        if len(window) <= FEEDBACK_LIMIT:
            return
        window.clear()
        self.paused_until = now + FEEDBACK_PAUSE
        self.engine.rules_paused += 1
        self.engine.errors_total += 1
        log.error("rule %s: woken more than %d times within %g s by what rules wrote or emitted (rules triggering "
                  "each other?); paused for %g s", self.id, FEEDBACK_LIMIT, FEEDBACK_WINDOW, FEEDBACK_PAUSE,
                  extra={"rule": self.id})  # fmt: skip

    # -- firing ----------------------------------------------------------

    def fire(self, firing: Firing) -> None:
        if self.engine.clock.now() < self.paused_until:
            self.engine.record(self.id, firing, "paused: triggered by rules too often")
            return
        if self.config.debounce:
            self.debounce(self.engine.clock.now() + self.config.debounce, firing)
        else:
            self.dispatch(firing)

    def debounce(self, due: float, firing: Firing) -> None:
        """Dispatch ``firing`` at ``due`` unless another firing comes first (saved across restarts)."""
        if self.debouncer is not None:
            self.debouncer.cancel()
        self.engine.store.put(f"debounce/{self.id}", {
            "kind": "debounce", "rule": self.id, "fingerprint": self.fingerprint, "due": due, **firing.saved(),
        })  # fmt: skip
        self.debouncer = self.engine.tasks.spawn(self._debounce(due, firing), name=f"debounce {self.id}")

    async def _debounce(self, due: float, firing: Firing) -> None:
        await self.engine.clock.sleep_until(due)
        self.debouncer = None
        self.engine.store.remove(f"debounce/{self.id}")
        self.dispatch(firing)

    def save_queue(self) -> None:
        """Keep the queued firings in the timer store, so a restart still runs them."""
        key = f"queue/{self.id}"
        if self.queue:
            self.engine.store.put(key, {
                "kind": "queue", "rule": self.id, "fingerprint": self.fingerprint,
                "firings": [firing.saved() for firing in self.queue],
            })  # fmt: skip
        else:
            self.engine.store.remove(key)

    def dispatch(self, firing: Firing) -> None:
        engine, config = self.engine, self.config
        now = engine.clock.now()
        if config.throttle and now - self.last_started < config.throttle:
            engine.record(self.id, firing, "throttled")
            return
        try:
            holds = self.check(Scope(engine.hub, now, engine.zone, firing.value))
        except ExpressionFailed as exc:
            engine.errors_total += 1
            log.error("rule %s: condition failed: %s", self.id, exc, extra={"rule": self.id})
            engine.record(self.id, firing, f"error: {exc}")
            return
        if not holds:
            engine.record(self.id, firing, "conditions not met")
            return
        if self.runs:
            if config.mode == "single":
                engine.record(self.id, firing, "skipped: already running")
                return
            if config.mode == "restart":
                for task in list(self.runs):
                    task.cancel()
            elif config.mode == "queued":
                if len(self.queue) >= config.max:
                    engine.record(self.id, firing, "dropped: queue full")
                else:
                    self.queue.append(firing)
                    self.save_queue()
                    engine.record(self.id, firing, "queued")
                return
            elif len(self.runs) >= config.max:
                engine.record(self.id, firing, "dropped: max parallel runs")
                return
        self.start(firing)

    def start(self, firing: Firing, frames: Any = None, saved: dict[str, Any] | None = None, key: str | None = None,
              children: Saved | None = None) -> None:  # fmt: skip
        engine = self.engine
        self.last_started = engine.clock.now()
        engine.firings_total += 1
        entry = engine.record(self.id, firing, "running")
        run = Run(self, firing)
        if key is not None:
            run.key = key
        args = (frames, saved, children) if frames is not None else ()
        task = engine.tasks.spawn(self._run(run, entry, args), name=f"rule {self.id}")
        self.runs[task] = entry

    async def _run(self, run: Run, entry: dict[str, Any], args: tuple[Any, ...]) -> None:
        task = asyncio.current_task()
        try:
            await run.execute(*args)
            entry["outcome"] = "done"
        except StopRun as exc:
            entry["outcome"] = f"stopped: {exc}"
        except asyncio.CancelledError:
            entry["outcome"] = "cancelled"
            raise
        except Exception as exc:
            self.engine.errors_total += 1
            entry["outcome"] = f"error: {exc}"
            log.error("rule %s: run failed: %s", self.id, exc, exc_info=not isinstance(exc, ExpressionFailed),
                      extra={"rule": self.id})  # fmt: skip
        finally:
            self.runs.pop(task, None)  # type: ignore[arg-type]
            if self.queue and not self.runs and not self.engine.stopping:
                self.start(self.queue.popleft())
                self.save_queue()

    def stop(self) -> None:
        """Stop everything this rule has going (reload or removal; not shutdown)."""
        self.queue.clear()
        self.engine.store.remove(f"queue/{self.id}")
        if self.debouncer is not None:
            self.debouncer.cancel()
            self.engine.store.remove(f"debounce/{self.id}")
        for task in list(self.runs):
            task.cancel()
        for binding in self.bindings:
            binding.stop()


@dataclass
class RulesStats:
    firings: int = counter("edged_rule_firings", "Rule firings")
    errors: int = counter("edged_rule_errors", "Rule actions that failed")
    paused: int = counter("edged_rules_paused", "Rules paused because what rules did woke them too often (a loop)")
    latency: Histogram = histogram(
        "edged_rule_latency_seconds", "From a reading entering the Hub to the rule's command reaching the adapter"
    )
    recent: list[dict[str, Any]] = field(default_factory=list)  # the last firings, newest last


class RulesEngine:
    name = "rules"
    labels: dict[str, str] = {}

    def __init__(self, rules: Sequence[Rule], hub: Hub, state_dir: Path, timezone: str = "UTC",
                 clock: Clock | None = None) -> None:  # fmt: skip
        self.hub = hub
        self.state_dir = Path(state_dir)
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            log.error("unknown time zone %r (gateway.timezone); rules use UTC", timezone)
            timezone, self.zone = "UTC", ZoneInfo("UTC")
        self.timezone = timezone
        self.clock: Clock = clock or RealClock()
        self.store = TimerStore(self.state_dir)
        self.tasks = TaskSet()
        self.rules: dict[str, RuleRuntime] = {}
        self.firings_total = 0
        self.errors_total = 0
        self.loops_prevented = 0
        self.rules_paused = 0
        self.rule_writes: dict[tuple[str, str], float] = {}  # when a rule last wrote each point
        self.recent: deque[dict[str, Any]] = deque(maxlen=50)
        self.latencies: deque[float] = deque(maxlen=10_000)  # the recent window (tools, benchmarks)
        self.latency = Histogram()  # every one since start (metrics)
        self.stopping = False
        self.started = asyncio.Event()  # set once the rules are live (for tests and tools)
        self.on_command: Callable[[str, Command], None] | None = None  # (rule id, command) before each write
        self._configs = [r for r in rules if r.enabled]
        self._started = False
        self._index: dict[tuple[str, str], list[Binding]] = {}
        self._event_bindings: list[Binding] = []
        self._waits: list[Binding] = []

    # -- lifecycle -------------------------------------------------------

    async def run(self) -> None:
        """Load saved timers, subscribe to the Hub and work until cancelled."""
        saved = await asyncio.to_thread(self.store.load)
        self.stopping = False
        unsubscribe = [self.hub.subscribe(self._on_batch), self.hub.subscribe_events(self._on_event)]
        self._started = True
        try:
            self._apply(self._configs)
            self._resume(saved)
            log.info("rules engine started with %d rule(s)", len(self.rules))
            self.started.set()
            await self.store.flush_forever()
        finally:
            self.stopping = True
            for undo in unsubscribe:
                undo()
            await self.tasks.close()
            self.rules.clear()
            self._started = False
            self.started.clear()

    @property
    def state(self) -> State:
        return State.RUNNING if self.started.is_set() else State.STOPPED

    def health_problems(self) -> list[str]:
        return []

    def note_latency(self, seconds: float) -> None:
        """A rule's command left for the adapter ``seconds`` after the reading that woke it."""
        self.latencies.append(seconds)
        self.latency.observe(seconds)

    def stats(self) -> RulesStats:
        return RulesStats(self.firings_total, self.errors_total, self.rules_paused, self.latency.copy(), list(self.recent))

    def reload(self, rules: Sequence[Rule]) -> None:
        """Take a new rule list; rules whose configuration is unchanged keep their state."""
        self._configs = [r for r in rules if r.enabled]
        if self._started:
            self._apply(self._configs)

    def _apply(self, configs: Sequence[Rule]) -> None:
        old, self.rules = self.rules, {}
        kept = 0
        for config in configs:
            runtime = old.pop(config.id, None)
            if runtime is not None and runtime.config == config:
                kept += 1
            else:
                if runtime is not None:
                    runtime.stop()
                runtime = RuleRuntime(self, config)
            self.rules[config.id] = runtime
        for runtime in old.values():
            runtime.stop()
        self._reindex()
        if old or kept:
            log.info("rules reloaded: %d kept, %d new or changed, %d removed", kept, len(self.rules) - kept, len(old))

    def _reindex(self) -> None:
        self._index, self._event_bindings = {}, []
        for runtime in self.rules.values():
            for binding in runtime.bindings:
                self._add(binding)
        for binding in self._waits:
            self._add(binding)

    def _add(self, binding: Binding) -> None:
        trigger = binding.trigger
        for point in trigger.points:
            self._index.setdefault(point, []).append(binding)
        if not trigger.points and trigger.schedule is None:
            self._event_bindings.append(binding)
        binding.start()

    def _resume(self, saved: dict[str, dict[str, Any]]) -> None:
        """Take up the timers, runs and queues saved by the previous run of the engine.

        Queues go last: a queue waits behind its rule's resumed run, or starts
        its first firing when no run was resumed. The branches of a saved
        ``parallel`` block are resumed by their run (they name it as ``parent``)."""
        branches = {key: entry for key, entry in saved.items() if entry.get("parent") is not None}
        for key, entry in sorted(saved.items(), key=lambda item: item[1].get("kind") == "queue"):
            if key in branches:
                continue
            runtime = self.rules.get(str(entry.get("rule")))
            try:
                if runtime is None or entry.get("fingerprint") != runtime.fingerprint:
                    raise LookupError("its rule was changed or removed")
                kind = entry.get("kind")
                if kind in ("delay", "wait", "parallel"):
                    runtime.start(Firing.restore(entry), resume_frames(entry), entry, key, branches)
                elif kind == "debounce":
                    runtime.debounce(float(entry["due"]), Firing.restore(entry))
                elif kind == "queue":
                    runtime.queue.extend(Firing.restore(firing) for firing in entry["firings"])
                    if not runtime.runs:
                        runtime.start(runtime.queue.popleft())
                    runtime.save_queue()
                elif kind == "schedule":
                    continue  # the rule's schedule trigger reads it when it starts (catch_up)
                elif kind == "for":
                    binding = runtime.bindings[int(entry["trigger"])]
                    if not isinstance(binding.trigger, ThresholdState) or not binding.trigger.resume_armed():
                        raise LookupError("the point is no longer past its threshold")
                    binding.arm(float(entry["due"]), Firing(entry["label"], entry["value"], self.clock.now()))
                else:
                    raise ValueError(f"unknown kind {kind!r}")
            except (LookupError, KeyError, TypeError, ValueError) as exc:
                log.info("saved rule timer %s dropped: %s", key, exc)
                self.store.remove(key)
        for key in branches:  # a branch whose run was not resumed goes with it
            root, seen = key, set()
            while root in branches and root not in seen:
                seen.add(root)
                root = str(branches[root]["parent"])
            if root in seen or root not in self.store.entries:
                log.info("saved rule timer %s dropped: its run was not resumed", key)
                self.store.remove(key)

    # -- inputs from the Hub ---------------------------------------------

    def _on_batch(self, readings: Sequence[Reading]) -> None:
        received = time.perf_counter()
        index = self._index
        for reading in readings:
            bindings = index.get((reading.device_id, reading.key))
            if bindings is not None:
                for binding in bindings:
                    binding.on_reading(reading, received)

    def _on_event(self, event: Event) -> None:
        for binding in list(self._event_bindings):
            binding.on_event(event)

    # -- used by runs ----------------------------------------------------

    async def wait_for(self, config: Any, timeout: float | None) -> Firing | None:
        """Wait until ``config`` (a trigger) fires; ``None`` after ``timeout`` seconds."""
        fired: asyncio.Future[Firing] = asyncio.get_running_loop().create_future()

        def fire(firing: Firing) -> None:
            if not fired.done():
                fired.set_result(firing)

        binding = Binding(self, make_trigger(config, self.hub, self.timezone), fire)
        self._waits.append(binding)
        self._add(binding)
        sleeper = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + timeout)) if timeout is not None else None
        try:
            await asyncio.wait([fired] if sleeper is None else [fired, sleeper], return_when=asyncio.FIRST_COMPLETED)
            return fired.result() if fired.done() else None
        finally:
            if sleeper is not None:
                sleeper.cancel()
            fired.cancel()
            binding.stop()
            self._waits.remove(binding)
            self._reindex_remove(binding)

    def _reindex_remove(self, binding: Binding) -> None:
        for point in binding.trigger.points:
            bindings = self._index.get(point)
            if bindings is not None and binding in bindings:
                bindings.remove(binding)
                if not bindings:
                    del self._index[point]
        if binding in self._event_bindings:
            self._event_bindings.remove(binding)

    def record(self, rule_id: str, firing: Firing, outcome: str) -> dict[str, Any]:
        entry = {"ts": self.clock.now(), "rule_id": rule_id, "trigger": firing.trigger, "outcome": outcome}
        self.recent.append(entry)
        return entry
