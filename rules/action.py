"""Running a rule's actions.

A ``Run`` walks the rule's action lists. Every list has a path
(``actions``, ``actions.2.then``, ``actions.3.choices.0.actions``, ...) so
the place after a delay or a wait can be saved as a list of
``(path, next index)`` frames, innermost first; after a restart the run
waits out what is left of the delay (or waits again, until the saved
deadline) and goes on from there.

A ``parallel`` block saves an entry of its own (where the run goes on once
every branch is done) and each branch saves its place under its own key,
naming the block's entry as its ``parent``; a restart runs the branches
that had not finished, each from its place, then goes on after the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edged.model import Command, Origin, RuleEvent, Value
from edged.rules import config as cfg
from edged.rules.condition import Check, Scope, compile_conditions, evaluate
from edged.rules.expression import Expression

if TYPE_CHECKING:
    from edged.rules.engine import RuleRuntime

log = logging.getLogger("edged.rules")

Frames = tuple[tuple[str, int], ...]
Saved = dict[str, dict[str, Any]]  # timer store entries by key
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True, slots=True)
class Firing:
    """Why a rule runs: the trigger's label, the value that fired it, when."""

    trigger: str
    value: Value
    ts: float
    received: float | None = None  # perf_counter() when the reading reached the Hub

    def saved(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "value": self.value, "ts": self.ts}

    @classmethod
    def restore(cls, entry: dict[str, Any]) -> Firing:
        return cls(str(entry["trigger"]), entry["value"], float(entry["ts"]))


class StopRun(Exception):
    """A wait timed out with ``on_timeout: stop``."""


class Program:
    """A rule's actions prepared once: lists by path, compiled conditions and expressions."""

    def __init__(self, actions: Sequence[Any]) -> None:
        self.lists: dict[str, Sequence[Any]] = {}
        self.checks: dict[int, Check] = {}
        self.expressions: dict[int, Expression] = {}
        self._walk("actions", actions)

    def _walk(self, path: str, actions: Sequence[Any]) -> None:
        self.lists[path] = actions
        for index, action in enumerate(actions):
            here = f"{path}.{index}"
            if isinstance(action, cfg.WriteAction) and action.expression is not None:
                self.expressions[id(action)] = Expression(action.expression)
            elif isinstance(action, cfg.IfAction):
                self.checks[id(action)] = compile_conditions(action.conditions)
                self._walk(f"{here}.then", action.then)
                self._walk(f"{here}.else", action.else_)
            elif isinstance(action, cfg.ChooseAction):
                for number, choice in enumerate(action.choices):
                    self.checks[id(choice)] = compile_conditions(choice.conditions)
                    self._walk(f"{here}.choices.{number}.actions", choice.actions)
                self._walk(f"{here}.default", action.default)
            elif isinstance(action, (cfg.SequenceAction, cfg.ParallelAction)):
                self._walk(f"{here}.actions", action.actions)


class Run:
    """One execution of a rule's actions."""

    def __init__(self, rule: RuleRuntime, firing: Firing) -> None:
        self.rule = rule
        self.engine = rule.engine
        self.program = rule.program
        self.firing = firing
        self.key = f"run/{rule.id}/{uuid.uuid4().hex[:12]}"
        self.immediate = True  # no delay or wait yet: writes count towards latency
        # Where each task of this run saves its place: (key, parent key). The run's
        # own task uses ``key``; every parallel branch is a task with a key of its own.
        self._slots: dict[asyncio.Task[Any] | None, tuple[str, str | None]] = {}

    def scope(self) -> Scope:
        return Scope(self.engine.hub, self.engine.clock.now(), self.engine.zone, self.firing.value)

    async def execute(self, frames: Frames = (("actions", 0),), saved: dict[str, Any] | None = None,
                      children: Saved | None = None) -> None:  # fmt: skip
        """Run from ``frames``; with a ``saved`` entry, first finish what it was doing.

        ``children`` are the saved entries of the branches below a saved
        ``parallel`` block (and below theirs)."""
        if saved is not None:
            kind, at, due = saved["kind"], saved.get("at"), saved.get("due")
            if kind == "wait":
                await self._wait(self._action_at(at), at, None if due is None else float(due), frames)
            elif kind == "parallel":
                await self._parallel(self._action_at(at), at, frames, children or {})
            else:
                await self._delay(float(due), frames)
        for depth, (path, index) in enumerate(frames):
            await self._list(path, index, frames[depth + 1 :])

    def _action_at(self, at: str) -> Any:
        path, _, index = at.rpartition(".")
        return self.program.lists[path][int(index)]

    async def _list(self, path: str, start: int, outer: Frames) -> None:
        actions = self.program.lists[path]
        for index in range(start, len(actions)):
            await self._action(actions[index], f"{path}.{index}", ((path, index + 1), *outer))

    async def _action(self, action: Any, here: str, resume: Frames) -> None:
        if isinstance(action, cfg.WriteAction):
            await self._write(action)
        elif isinstance(action, cfg.DelayAction):
            self.immediate = False
            await self._delay(self.engine.clock.now() + action.for_, resume)
        elif isinstance(action, cfg.WaitAction):
            self.immediate = False
            due = None if action.timeout is None else self.engine.clock.now() + action.timeout
            await self._wait(action, here, due, resume)
        elif isinstance(action, cfg.IfAction):
            branch = "then" if self.program.checks[id(action)](self.scope()) else "else"
            await self._list(f"{here}.{branch}", 0, resume)
        elif isinstance(action, cfg.ChooseAction):
            scope = self.scope()
            for number, choice in enumerate(action.choices):
                if self.program.checks[id(choice)](scope):
                    await self._list(f"{here}.choices.{number}.actions", 0, resume)
                    return
            await self._list(f"{here}.default", 0, resume)
        elif isinstance(action, cfg.SequenceAction):
            await self._list(f"{here}.actions", 0, resume)
        elif isinstance(action, cfg.ParallelAction):
            await self._parallel(action, here, resume)
        elif isinstance(action, cfg.EventAction):
            self.engine.hub.emit(RuleEvent(self.rule.id, action.name, dict(action.data), self.engine.clock.now()))
        elif isinstance(action, cfg.LogAction):
            log.log(_LEVELS[action.level], "rule %s: %s (trigger: %s = %r)", self.rule.id, action.message,
                    self.firing.trigger, self.firing.value, extra={"rule": self.rule.id})  # fmt: skip

    async def _write(self, action: cfg.WriteAction) -> None:
        value = action.value
        if action.expression is not None:
            value = evaluate(self.program.expressions[id(action)], self.scope())
        device, key = action.point
        command = Command(device, key, value, Origin.RULE, ts=self.engine.clock.now())
        self.rule.note_write(command)
        if self.immediate and self.firing.received is not None:
            self.engine.note_latency(time.perf_counter() - self.firing.received)
        result = await self.engine.hub.execute(command)
        if not result.ok:
            self.engine.errors_total += 1
            log.warning("rule %s: write %s.%s=%r %s: %s", self.rule.id, device, key, value, result.status, result.reason,
                        extra={"device": device, "rule": self.rule.id})  # fmt: skip

    async def _parallel(self, action: cfg.ParallelAction, here: str, resume: Frames, saved: Saved | None = None) -> None:
        """Run every branch at once (after a restart: the saved ones, from their places); then go on.

        A branch whose wait times out with ``on_timeout: stop`` stops the whole run."""
        with self._saved(resume, kind="parallel", at=here) as key:
            try:
                async with asyncio.TaskGroup() as group:
                    if saved is None:
                        for number, branch in enumerate(action.actions):
                            at = f"{here}.actions.{number}"
                            group.create_task(self._branch(f"{key}/{at}", key, self._action(branch, at, ())))
                    else:
                        for child, entry in saved.items():
                            if entry.get("parent") == key:
                                group.create_task(self._branch(child, key, self.execute(resume_frames(entry), entry, saved)))
            except* StopRun as stopped:
                raise stopped.exceptions[0] from None

    async def _branch(self, key: str, parent: str, body: Awaitable[None]) -> None:
        task = asyncio.current_task()
        self._slots[task] = (key, parent)
        try:
            await body
        finally:
            del self._slots[task]

    async def _delay(self, due: float, resume: Frames) -> None:
        """Sleep until ``due``; saved in the timer store so a restart resumes it."""
        with self._saved(resume, kind="delay", due=due):
            await self.engine.clock.sleep_until(due)

    async def _wait(self, action: cfg.WaitAction, at: str, due: float | None, resume: Frames) -> None:
        """Wait for the trigger of the wait action at path ``at`` until ``due``; saved like a delay."""
        with self._saved(resume, kind="wait", due=due, at=at):
            timeout = None if due is None else max(0.0, due - self.engine.clock.now())
            fired = await self.engine.wait_for(action.trigger, timeout)
        if fired is None and action.on_timeout == "stop":
            raise StopRun(f"wait for {action.trigger.type} timed out")

    @contextlib.contextmanager
    def _saved(self, resume: Frames, **pending: Any) -> Iterator[str]:
        """Keep this task's place in the timer store while the body waits; yield its key.

        A shutdown keeps the entry for the next start; anything else
        (the wait is over, the run was cancelled) removes it."""
        store = self.engine.store
        key, parent = self._slots.get(asyncio.current_task(), (self.key, None))
        store.put(key, {
            **pending, "parent": parent, "rule": self.rule.id, "fingerprint": self.rule.fingerprint,
            "frames": [list(frame) for frame in resume], **self.firing.saved(),
        })  # fmt: skip
        try:
            yield key
        finally:
            if not self.engine.stopping:
                store.remove(key)


def resume_frames(entry: dict[str, Any]) -> Frames:
    return tuple((str(path), int(index)) for path, index in entry["frames"])
