"""What ties fleet operations to the daemon: messages to the gateway in, answers and the digest out.

The daemon makes one ``Fleet``, gives every uplink service its ``handle``
(the service calls it with each ``GatewayRequest`` and the uplink's name),
and runs ``run()`` beside its units. With ``remote_config.enabled: false``
(the default) every request is answered ``rejected`` and no digest goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from edged.config import Config, load_config
from edged.errors import ConfigError, Refused, UplinkError
from edged.fleet.digest import changes, digest, encode, rule_totals
from edged.fleet.remote import RemoteConfig, Trial, recover
from edged.fleet.ring import LevelOverride, LogRing
from edged.fleet.rpc import OPERATIONS, Failure, Refusal, _args
from edged.model import Origin
from edged.tasks import TaskSet
from edged.uplink.commands import GATEWAY, GatewayRequest, RejectionLimit
from edged.view import GatewayView

log = logging.getLogger(__name__)

EXIT_RESTART = 75  # the exit status of the restart operation: systemd's Restart=on-failure starts edged again
DIGEST_POLL = 1.0  # seconds between two looks for a change the digest reports at once
PUBLISH_TIMEOUT = 10.0
RESTART_GRACE = 5.0  # seconds the restart answer is given to reach the cloud before the gateway exits


class Gateway(Protocol):
    """What the fleet needs of the daemon."""

    config: Config
    config_path: Path
    view: GatewayView
    exit_status: int

    async def reload(self) -> bool: ...

    def stop(self) -> None: ...


class Fleet:
    restart_status = EXIT_RESTART

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.view = gateway.view
        self.config_path = Path(gateway.config_path)
        self.state_dir = gateway.config.gateway.state_dir
        self.ring = LogRing(gateway.config.remote_config.log_lines)
        self.levels = LevelOverride()
        self.remote = RemoteConfig(self.config_path, self.state_dir, self.config, self.view, self.reload, self._report)
        self.rejections = RejectionLimit()
        self._tasks = TaskSet()
        self._recovered: Trial | None = None
        self._restart = False
        self._digest_now = asyncio.Event()

    def config(self) -> Config:
        return self.gateway.config

    async def reload(self) -> bool:
        ok = await self.gateway.reload()
        self.config_changed()
        return ok

    def config_changed(self) -> None:
        """The gateway took a new configuration: publish a digest at once (or stop, or start)."""
        self._digest_now.set()

    @property
    def enabled(self) -> bool:
        return self.config().remote_config.enabled

    # -- at start -----------------------------------------------------------

    def recover(self) -> Config | None:
        """Before the units start: when the gateway stopped during a trial, put the previous
        configuration back and return it (loaded) to start with. Blocking."""
        trial = recover(self.config_path, self.state_dir)
        if trial is None:
            return None
        self._recovered = trial
        try:
            restored = load_config(self.config_path)
        except ConfigError as exc:
            log.error("the configuration put back is invalid; starting with the one read:\n%s", exc)
            return None
        return restored.model_copy(update={"gateway": self.config().gateway})

    async def run(self) -> None:
        """Keep the log ring and publish the state digest, until cancelled."""
        root = logging.getLogger()
        root.addHandler(self.ring)
        try:
            if self._recovered is not None:
                self.remote.recovered(self._recovered)
                self._recovered = None
            await self._digests()
        finally:
            root.removeHandler(self.ring)
            self.levels.restore()
            await self._tasks.close()

    # -- requests ------------------------------------------------------------

    def handle(self, request: GatewayRequest, uplink: str) -> None:
        """Take one message to the gateway from ``uplink``'s cloud; its answer goes back there."""
        if not self.enabled:
            if self.rejections.allow():
                self._answer(uplink, request, "rejected", reason="this gateway takes no remote operations "
                             "(remote_config.enabled is false)")  # fmt: skip
            return
        if request.method == "config":
            self._tasks.spawn(self.remote.push(request.args, uplink), name="configuration push")
        else:
            self._tasks.spawn(self._operate(request, uplink), name=f"gateway operation {request.method}")

    async def _operate(self, request: GatewayRequest, uplink: str) -> None:
        entry = OPERATIONS.get(request.method)
        if entry is None:
            if self.rejections.allow():
                expected = ", ".join([*OPERATIONS, "config"])
                reason = f"unknown gateway operation {request.method!r}; expected one of {expected}"
                self._answer(uplink, request, "rejected", reason=reason)
            return
        operation, allowed = entry
        lane = None if self.view.uplink is None else self.view.uplink.services.get(uplink)
        acked_before = None if lane is None else lane.lane.acked
        try:
            result = await operation(self, _args(request.args, allowed))
        except Refusal as exc:
            self._answer(uplink, request, "rejected", reason=str(exc))
            return
        except Failure as exc:
            self._answer(uplink, request, "failed", reason=str(exc))
            return
        except Exception as exc:  # an operation that breaks is answered, never a crash
            log.exception("gateway operation %s failed", request.method)
            self._answer(uplink, request, "failed", reason=f"{type(exc).__name__}: {exc}")
            return
        self._answer(uplink, request, "ok", result=result)
        if self._restart:
            await self._exit(uplink, acked_before)

    def restart_after_answer(self) -> None:
        self._restart = True

    async def _exit(self, uplink: str, acked_before: int | None) -> None:
        """Stop the gateway with ``EXIT_RESTART`` once the answer reached the cloud (or after a grace time)."""
        uplinks = self.view.uplink
        if uplinks is not None and acked_before is not None:
            service = uplinks.services[uplink]
            with contextlib.suppress(TimeoutError):
                await uplinks.wait_for(lambda: service.lane.acked > acked_before, RESTART_GRACE)
        log.warning("restarting (asked by the cloud): exit status %d", EXIT_RESTART)
        self.gateway.exit_status = EXIT_RESTART
        self.gateway.stop()

    def _answer(self, uplink: str, request: GatewayRequest, status: str, result: Any = None, reason: str | None = None) -> None:
        answer: dict[str, Any] = {"id": request.raw_id, "device": GATEWAY, "point": request.method, "origin": Origin.CLOUD,
                                  "status": status, "reason": reason, "ts": time.time()}  # fmt: skip
        if result is not None:
            answer["result"] = result
        self._put(uplink, "command_result", answer)

    def _report(self, uplink: str, step: str, push_id: str | None, **fields: Any) -> None:
        self._put(uplink, "config", {"id": push_id, "step": step, **fields, "ts": time.time()})
        self._digest_now.set()

    def _put(self, uplink: str, subject: str, data: dict[str, Any]) -> None:
        if self.view.uplink is None:
            log.warning("no uplink to send the %s answer to: %s", subject, data)
            return
        self.view.uplink.outbox.put_event(subject, data, uplink=uplink)

    # -- the state digest ------------------------------------------------------

    async def _digests(self) -> None:
        last_key: Any = None
        last_sent = float("-inf")
        rules_before = rule_totals(self.view)
        while True:
            settings = self.config().remote_config
            self.ring.resize(settings.log_lines)
            if settings.enabled:
                document = digest(self.view, self.remote.active, rules_before)
                key = changes(document)
                if (key != last_key or time.monotonic() - last_sent >= settings.state_interval) and await self._publish(encode(document)):
                    last_key, last_sent = key, time.monotonic()
                    rules_before = rule_totals(self.view)
            self._digest_now.clear()
            # Turned off, the digest waits for a new configuration: an idle gateway wakes no more for it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DIGEST_POLL if settings.enabled else None):
                    await self._digest_now.wait()

    async def _publish(self, payload: bytes) -> bool:
        """Publish the digest on every connected uplink that keeps one; True when one took it."""
        if self.view.uplink is None:
            return False
        published = False
        for service in list(self.view.uplink.services.values()):
            if not service.connected:
                continue
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    published = await service.link.publish_state(payload) or published
            except (UplinkError, Refused, TimeoutError) as exc:
                log.debug("%s: state digest not published: %s", service.title, exc)
        return published
