"""The daemon: starts the gateway's parts, supervises them, reloads and stops.

Every part (the uplinks with their one outbox, each adapter, the rules
engine, the status servers) is a *unit*: a long-running ``run()`` started in the
daemon's TaskGroup under a supervisor that logs a crash and starts a fresh
instance after a backoff delay, so one failing adapter never takes the
daemon down. Units start in the order outbox/uplink, adapters, rules,
status, and stop in reverse, so everything the adapters produced is
committed before the outbox closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edged import adapters, logs
from edged.adapter import Adapter, AdapterConfig
from edged.backoff import Backoff, retry_forever
from edged.clock import ClockWatch
from edged.config import Config, received_config
from edged.errors import ConfigError, EdgedError
from edged.fleet.fleet import Fleet
from edged.hub import Hub
from edged.rules.config import point_problems
from edged.sdnotify import Notifier
from edged.view import LOOP_LAG_LIMIT, GatewayView
from edged.yamlsource import format_path

if TYPE_CHECKING:
    from edged.rules.engine import RulesEngine
    from edged.status.http import StatusServer
    from edged.uplink.uplinks import Uplinks

log = logging.getLogger(__name__)
GC_YOUNG_OBJECTS = 20_000  # allocations between two collections of the youngest generation


def settle_collector() -> None:
    """Set the garbage collector as the running gateway has it, once start-up is over."""
    # What start-up built (config models, point tables) lives as long as the daemon: keep it
    # out of the collector's full passes, which otherwise pause a large configuration for 100 ms.
    gc.freeze()
    # Readings are short-lived tuples made by the hundred thousand a second; a young
    # generation of 700 objects (the default) would run the collector a thousand times a second.
    gc.set_threshold(GC_YOUNG_OBJECTS, 20, 20)


class Runnable(Protocol):
    async def run(self) -> None: ...


@dataclass
class Unit:
    name: str
    settings: object  # the slice of configuration the unit was built from
    task: asyncio.Task[None]


async def read_config(path: Path) -> Config:
    """The configuration at ``path``, read and validated by a new Python process: a large file
    neither pauses the running gateway nor leaves the memory of its reading here."""
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from edged.config import send_config; send_config(sys.argv[1], sys.stdout.buffer)",
            str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as exc:  # no process to be had (out of memory, no interpreter): read it here
        log.warning("reading the configuration in a separate process failed (%s); reading it here", exc)
        return received_config(path, b"")
    sent, _ = await process.communicate()
    return received_config(path, sent if process.returncode == 0 else b"")


class Daemon:
    def __init__(self, config: Config, config_path: Path, log_level: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.log_level = log_level  # from the command line: outranks gateway.log_level
        self.state_dir = config.gateway.state_dir
        self.hub = Hub(command_timeout=config.gateway.command_timeout)
        self.view = GatewayView(config.gateway.id, self.hub)  # what the status servers and metrics see
        self.status: StatusServer | None = None
        self.ready = asyncio.Event()
        self.http_listening = asyncio.Event()  # set by the HTTP status server once it accepts
        self.notifier = Notifier()
        self._units: dict[str, Unit] = {}
        self._stopping = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self.exit_status = 0  # what `edged run` exits with; the fleet's restart sets it (docs/fleet.md)
        self.fleet = Fleet(self)  # operations from the cloud: remote configuration, gateway RPCs, the state digest

    # The running parts, as the view holds them.

    @property
    def adapters(self) -> dict[str, Adapter[Any]]:
        return self.view.adapters

    @property
    def uplink(self) -> Uplinks | None:
        """The outbox and every uplink it feeds (one unit, "uplink")."""
        return self.view.uplink

    @property
    def rules(self) -> RulesEngine | None:
        return self.view.rules

    # -- the plan: which units a configuration asks for ---------------------

    def _plan(self, config: Config) -> dict[str, tuple[object, Callable[[], Runnable]]]:
        plan: dict[str, tuple[object, Callable[[], Runnable]]] = {}
        if config.uplink is not None or config.uplinks is not None:
            plan["uplink"] = ((config.outbox, config.uplinks_by_name(), config.gateway.id), self._make_uplink)
        for adapter in config.adapters:
            plan[f"adapter:{adapter.instance}"] = (adapter, partial(self._make_adapter, adapter))
        if config.rules:
            plan["rules"] = (config.rules, self._make_rules)
        if config.status.http.enabled:
            plan["status:http"] = (config.status.http, self._make_status)
        if config.status.coap.enabled:
            plan["status:coap"] = (config.status.coap, self._make_coap_status)
        return plan

    def _make_uplink(self) -> Uplinks:
        from edged.uplink.uplinks import Uplinks

        uplinks = Uplinks.build(self.config.outbox, self.config.uplinks_by_name(), self.hub, self.state_dir,
                                self.config.gateway.id)  # fmt: skip
        uplinks.outbox.clock_synced = self.view.clock_synced
        for service in uplinks.services.values():
            service.gateway = self.fleet.handle  # messages to the gateway itself
        self.view.uplink = uplinks
        return uplinks

    def _make_adapter(self, config: AdapterConfig) -> Runnable:
        state_dir = self.state_dir / "adapters" / config.instance
        state_dir.mkdir(parents=True, exist_ok=True)
        adapter = adapters.adapter_class(config.type)(config, self.hub, state_dir)
        self.adapters[config.instance] = adapter
        return adapter

    def _make_rules(self) -> Runnable:
        from edged.rules.engine import RulesEngine

        self._warn_rule_points(self.config)
        self.view.rules = RulesEngine(self.config.rules, self.hub, self.state_dir / "rules", self.config.gateway.timezone)
        return self.view.rules

    @staticmethod
    def _warn_rule_points(config: Config) -> None:
        for problem in point_problems(config.rules, config.adapters):
            rule = config.rules[problem.rule]
            log.warning("rule %s: %s: %s; its writes will be rejected", rule.id, format_path(problem.where), problem.message,
                        extra={"rule": rule.id})  # fmt: skip

    def _make_status(self) -> Runnable:
        from edged.status.http import StatusServer

        self.status = StatusServer(self.view, self.config.status.http, self.http_listening)
        return self.status

    def _make_coap_status(self) -> Runnable:
        from edged.status.coap import CoapStatusServer

        return CoapStatusServer(self.view, self.config.status.coap)

    # -- running -------------------------------------------------------------

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT (or ``stop()``); SIGHUP reloads the configuration."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        clock = ClockWatch(self.config.gateway.clock == "trusted", self._clock_changed)
        restored = self.fleet.recover()  # a trial the last run did not finish: the previous configuration
        if restored is not None:
            self.config = restored
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                watch = group.create_task(clock.run(), name="clock watch")
                for name, (settings, factory) in self._plan(self.config).items():
                    self._start_unit(name, settings, factory)
                monitor = group.create_task(self._monitor_loop(), name="loop monitor")
                fleet = group.create_task(self.fleet.run(), name="fleet")
                await self._announce_ready()
                await self._stopping.wait()
                log.info("stopping")
                self.notifier.notify("STOPPING=1")
                fleet.cancel()  # no reload or push while the units stop
                in_start_order = [name for name in self._plan(self.config) if name in self._units]
                await self._stop_units(in_start_order, self.config.gateway.stop_timeout)
                monitor.cancel()
                watch.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.hub.close()
        log.info("stopped")
        if self.exit_status:
            raise SystemExit(self.exit_status)

    def stop(self) -> None:
        self._stopping.set()

    def _clock_changed(self, synced: bool) -> None:
        self.view.clock_synced = synced
        if self.uplink is not None:
            self.uplink.outbox.clock_synced = synced

    async def _announce_ready(self) -> None:
        if "status:http" in self._units:
            # Ready means the status API answers; a port in use fails the unit, which retries.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.http_listening.wait()
        self.ready.set()
        settle_collector()
        self.notifier.notify("READY=1\nSTATUS=running")
        log.info("ready: %d adapter(s), state in %s", len(self.config.adapters), self.state_dir)

    def _start_unit(self, name: str, settings: object, factory: Callable[[], Runnable]) -> None:
        assert self._group is not None

        async def attempt() -> None:
            await factory().run()

        def crashed(exc: BaseException) -> None:
            if isinstance(exc, EdgedError):  # a failure we understand and have already described
                log.error("%s failed: %s", name, exc)
            else:
                log.error("%s crashed", name, exc_info=exc)

        task = self._group.create_task(
            retry_forever(name, attempt, log, Backoff(initial=1.0, maximum=60.0), on_failure=crashed), name=name
        )
        self._units[name] = Unit(name, settings, task)

    async def _stop_units(self, names: list[str], timeout: float) -> None:
        """Cancel units in reverse order, each waited for, all within ``timeout``."""
        deadline = time.monotonic() + timeout
        for name in reversed(names):
            unit = self._units.pop(name)
            unit.task.cancel()
            _, pending = await asyncio.wait([unit.task], timeout=max(0.1, deadline - time.monotonic()))
            if pending:
                log.error("%s did not stop in time", name)
            if name.startswith("adapter:"):
                self.adapters.pop(name.removeprefix("adapter:"), None)

    async def _monitor_loop(self) -> None:
        """Measure event-loop lag and ping the systemd watchdog while the loop is healthy."""
        loop = asyncio.get_running_loop()
        period = min(1.0, self.notifier.watchdog_interval or 1.0)
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            self.view.loop_lag = max(0.0, loop.time() - before - period)
            if self.notifier.watchdog_interval and self.view.loop_lag < LOOP_LAG_LIMIT:
                self.notifier.notify("WATCHDOG=1")

    # -- reload --------------------------------------------------------------

    def _hand_over_uplink(self) -> Callable[[], Runnable]:
        """Build the new uplinks (from ``self.config``) and let them take the Hub's readings from the
        old ones in the same instant, so each reading goes to exactly one outbox; the old ones
        commit what they took as they stop. Returns the unit factory: the new uplinks first."""
        old = self.uplink
        assert old is not None
        new = self._make_uplink()
        new.listen()
        old.stop_listening()
        prepared = [new]
        return lambda: prepared.pop() if prepared else self._make_uplink()

    def request_reload(self) -> None:
        if self._group is not None and not self._stopping.is_set():
            self._group.create_task(self.reload(), name="reload")

    def _reload_gateway(self, new: Config) -> Config:
        """Apply the gateway section's log levels from ``new``; the rest of the section
        takes effect after a restart. Returns ``new`` with the gateway section now in force."""
        running, wanted = self.config.gateway, new.gateway
        levels = {"log_level": wanted.log_level, "log_levels": wanted.log_levels}
        if levels != {"log_level": running.log_level, "log_levels": running.log_levels}:
            logs.set_levels(self.log_level or wanted.log_level, wanted.log_levels)
            log.info("log levels now: %s, %s", self.log_level or wanted.log_level, dict(wanted.log_levels) or "libraries at warning")
        in_force = running.model_copy(update=levels)
        if wanted != in_force:
            log.warning("changes to the gateway section other than its log levels take effect after a restart")
        return new.model_copy(update={"gateway": in_force})

    async def reload(self) -> bool:
        """Load the configuration file again and apply what changed; keep the
        running configuration if the new one is invalid."""
        try:
            new = await read_config(self.config_path)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration:\n%s", exc)
            return False
        new = self._reload_gateway(new)
        old_plan, new_plan = self._plan(self.config), self._plan(new)
        self.config = new
        gone = [name for name in self._units if name not in new_plan or new_plan[name][0] != self._units[name].settings]
        factories = {name: factory for name, (_, factory) in new_plan.items()}
        if "uplink" in gone and "uplink" in new_plan and self.uplink is not None:
            factories["uplink"] = self._hand_over_uplink()
        if "rules" in gone and "rules" in new_plan and self.rules is not None:
            self._warn_rule_points(new)
            self.rules.reload(new.rules)  # keeps the state of unchanged rules
            self._units["rules"].settings = new_plan["rules"][0]
            gone.remove("rules")
        await self._stop_units(gone, new.gateway.stop_timeout)
        if "uplink" not in new_plan:
            self.view.uplink = None
        if "rules" not in new_plan:
            self.view.rules = None
        for name, (settings, _) in new_plan.items():
            if name not in self._units:
                self._start_unit(name, settings, factories[name])
        started = [n for n in new_plan if n not in old_plan or n in gone]
        self.fleet.config_changed()
        gc.freeze()
        log.info("configuration reloaded: %d unit(s) restarted or started, %d stopped",
                 len(started), len([n for n in gone if n not in new_plan]))
        return True
