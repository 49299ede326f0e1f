"""Configurations pushed from the cloud: received, checked, signed, applied, tried, confirmed or rolled back.

A push is a JSON object ``{"id": "cfg-42", "config": "<YAML text>",
"signature": "<base64>"}``. It is checked exactly as ``edged check-config``
checks a file, its signature against ``remote_config.trusted_keys``, and
then written over the configuration file (the previous one is kept in
``<state_dir>/fleet/versions``) and reloaded. During the trial
(``confirm_after``) the uplink that carried the push must be connected and
every adapter running; otherwise the previous file is put back and
reloaded. The trial is kept in ``<state_dir>/fleet/trial.json`` before the
file is replaced, so a gateway that stops during it (a crash, a power cut)
puts the previous file back when it starts again.

Each step is reported as a ``config`` event through the outbox to the uplink
that carried the push: ``received``, ``rejected``, ``applied``,
``confirmed``, ``rolled_back``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edged.config import Config, load_config
from edged.errors import ConfigError
from edged.files import write_atomic
from edged.part import State
from edged.view import GatewayView

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1024 * 1024  # a longer push is refused unread
MAX_CONFIG_ID = 128
TRIAL_POLL = 0.2  # seconds between two looks at the gateway's health during a trial


def file_hash(data: bytes) -> str:
    """How a configuration is known in reports and the state digest: its SHA-256, in hex."""
    return hashlib.sha256(data).hexdigest()


class PushRefused(Exception):
    """A pushed configuration is not taken; ``reasons`` say why."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


@dataclass(frozen=True)
class Push:
    """A configuration as the cloud pushed it."""

    id: str
    text: bytes
    signature: str | None

    @property
    def hash(self) -> str:
        return file_hash(self.text)


@dataclass
class Trial:
    """A pushed configuration on trial, as kept in ``trial.json``."""

    id: str
    hash: str
    uplink: str  # the uplink that carried it
    previous: str  # the file (in versions/) to put back on a rollback
    previous_id: str
    started: float  # wall-clock time it was applied
    confirm_after: float


def read_push(payload: Any) -> Push:
    """The push a message holds (its bytes, or the object an RPC ``config`` carries)."""
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_CONFIG_BYTES:
            raise PushRefused([f"message of {len(payload)} bytes; at most {MAX_CONFIG_BYTES} are taken"])
        try:
            payload = json.loads(bytes(payload).decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise PushRefused([f"bad JSON: {exc}"]) from None
    if not isinstance(payload, dict):
        raise PushRefused(['expected an object {"id": ..., "config": "<YAML text>", "signature": ...}'])
    unknown = sorted(set(payload) - {"id", "config", "signature"})
    if unknown:
        raise PushRefused([f"unknown key {unknown[0]!r}"])
    push_id, text, signature = payload.get("id"), payload.get("config"), payload.get("signature")
    if not isinstance(push_id, str) or not push_id or len(push_id) > MAX_CONFIG_ID:
        raise PushRefused([f"id must be a non-empty string of at most {MAX_CONFIG_ID} characters"])
    if not isinstance(text, str):
        raise PushRefused(["config must be the configuration file's text (a string)"])
    if signature is not None and not isinstance(signature, str):
        raise PushRefused(["signature must be a base64 string"])
    try:
        data = text.encode()
    except UnicodeEncodeError:
        raise PushRefused(["config is not valid Unicode text"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise PushRefused([f"a configuration of {len(data)} bytes; at most {MAX_CONFIG_BYTES} are taken"])
    return Push(push_id, data, signature)


class Versions:
    """The fleet's files in ``<state_dir>/fleet``: earlier configurations, the trial, the active id."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "fleet"
        self.trial_file = self.dir / "trial.json"
        self.active_file = self.dir / "active.json"

    def keep(self, data: bytes, keep: int) -> Path:
        """Store ``data`` as the newest earlier configuration; drop beyond ``keep``. Blocking."""
        versions = self.dir / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        existing = sorted(versions.glob("*.yaml"))
        number = int(existing[-1].name.split("-")[0]) + 1 if existing else 1
        path = versions / f"{number:06d}-{file_hash(data)[:12]}.yaml"
        write_atomic(path, data, 0o600)
        for old in sorted(versions.glob("*.yaml"))[:-keep]:
            old.unlink(missing_ok=True)
        return path

    def trial(self) -> Trial | None:
        try:
            return Trial(**json.loads(self.trial_file.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.error("cannot read %s (%s): no trial to finish", self.trial_file, exc)
            return None

    def start_trial(self, trial: Trial) -> None:
        write_atomic(self.trial_file, json.dumps(asdict(trial)).encode(), 0o600)

    def end_trial(self) -> None:
        self.trial_file.unlink(missing_ok=True)

    def active_id(self, data: bytes) -> str:
        """The id the cloud gave the configuration ``data`` (``local`` when it was not pushed)."""
        try:
            active = json.loads(self.active_file.read_text())
        except (OSError, ValueError):
            return "local"
        return str(active.get("id")) if isinstance(active, dict) and active.get("hash") == file_hash(data) else "local"

    def set_active(self, push_id: str, digest: str) -> None:
        write_atomic(self.active_file, json.dumps({"id": push_id, "hash": digest}).encode(), 0o600)


def write_config(path: Path, data: bytes) -> None:
    """Replace the configuration file, keeping its permissions (it may hold secrets). Blocking."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    write_atomic(path, data, mode)


def recover(config_path: Path, state_dir: Path) -> Trial | None:
    """Put back the configuration a trial replaced, if the gateway stopped during it. Blocking; at start."""
    versions = Versions(state_dir)
    trial = versions.trial()
    if trial is None:
        return None
    previous = versions.dir / trial.previous
    try:
        write_config(config_path, previous.read_bytes())
    except OSError as exc:
        log.error("the gateway stopped during the trial of configuration %s, and %s cannot be put back: %s",
                  trial.id, previous, exc)  # fmt: skip
        return None
    versions.end_trial()
    log.warning("the gateway stopped during the trial of configuration %s: the previous configuration is back", trial.id)
    return trial


Report = Callable[..., None]  # report(uplink, step, id, **fields)


class RemoteConfig:
    """Takes pushed configurations for a gateway whose configuration file is ``config_path``."""

    def __init__(self, config_path: Path, state_dir: Path, config: Callable[[], Config], view: GatewayView,
                 reload: Callable[[], Awaitable[bool]], report: Report) -> None:  # fmt: skip
        self.config_path = config_path
        self.versions = Versions(state_dir)
        self._config = config
        self.view = view
        self._reload = reload
        self._report = report
        self.trial: Trial | None = None
        self._lock = asyncio.Lock()
        data = self._read_current()
        self.active = (self.versions.active_id(data), file_hash(data))  # (id, hash) of the running file

    @property
    def active(self) -> tuple[str, str]:
        """The id and hash of the running configuration file (also in the view: /api/status)."""
        return self._active

    @active.setter
    def active(self, value: tuple[str, str]) -> None:
        self._active = value
        self.view.config = {"id": value[0], "hash": value[1]}

    def _read_current(self) -> bytes:
        try:
            return self.config_path.read_bytes()
        except OSError:
            return b""

    async def push(self, payload: Any, uplink: str) -> None:
        """Take one push from ``uplink``'s cloud, reporting each step."""
        try:
            push = read_push(payload)
        except PushRefused as exc:
            self._report(uplink, "rejected", None, reasons=exc.reasons)
            return
        self._report(uplink, "received", push.id, hash=push.hash)
        if self._lock.locked() or self.trial is not None:
            what = self.trial.id if self.trial is not None else "another configuration"
            self._report(uplink, "rejected", push.id, reasons=[f"{what} is being applied or tried; push again after it"])
            return
        async with self._lock:
            try:
                await self._check(push, uplink)
            except PushRefused as exc:
                log.warning("pushed configuration %s rejected: %s", push.id, exc)
                self._report(uplink, "rejected", push.id, hash=push.hash, reasons=exc.reasons)
                return
            await self._try(push, uplink)

    async def _check(self, push: Push, uplink: str) -> None:
        settings = self._config().remote_config
        if push.signature is not None or not settings.allow_unsigned:
            if push.signature is None:
                raise PushRefused(["unsigned: this gateway takes only configurations signed by a trusted key"])
            from edged.fleet.signature import verify  # cryptography, only for a gateway that takes pushes

            if not verify(push.text, push.signature, settings.trusted_keys):
                raise PushRefused(["the signature does not match the configuration with any trusted key"])
        new = await asyncio.to_thread(self._validate, push)
        current = self._config()
        reasons = []
        if not new.remote_config.enabled:
            reasons.append("remote_config.enabled: the new configuration turns remote configuration off; "
                           "that is done on the gateway, not from the cloud")  # fmt: skip
        if new.gateway.id != current.gateway.id or new.gateway.state_dir != current.gateway.state_dir:
            reasons.append("gateway: id and state_dir cannot be changed from the cloud")
        if uplink not in new.uplinks_by_name():
            reasons.append(f"the new configuration has no uplink {uplink!r}, which carried it: the gateway would be cut off")
        if reasons:
            raise PushRefused(reasons)

    def _validate(self, push: Push) -> Config:
        """``check-config`` on the pushed text, as a file next to the configuration file. Blocking."""
        candidate = self.config_path.with_name(f".{self.config_path.name}.pushed")
        write_atomic(candidate, push.text, 0o600)
        try:
            return load_config(candidate, check_points=True)  # as edged check-config checks a file
        except ConfigError as exc:
            raise PushRefused([str(problem).replace(str(candidate), self.config_path.name) for problem in exc.problems]) from None
        finally:
            candidate.unlink(missing_ok=True)

    async def _try(self, push: Push, uplink: str) -> None:
        started = time.monotonic()
        previous_data = self._read_current()
        previous_id = self.active[0]
        confirm_after = self._config().remote_config.confirm_after

        def apply() -> Trial:
            kept = self.versions.keep(previous_data, self._config().remote_config.keep)
            trial = Trial(push.id, push.hash, uplink, str(kept.relative_to(self.versions.dir)), previous_id, time.time(),
                          confirm_after)  # fmt: skip
            self.versions.start_trial(trial)  # before the file changes: a stop from here on rolls back at start
            write_config(self.config_path, push.text)
            return trial

        self.trial = await asyncio.to_thread(apply)
        try:
            if not await self._reload():
                await self._roll_back(push, uplink, ["the gateway did not take the configuration"], started)
                return
            self.active = (push.id, push.hash)
            log.info("configuration %s applied; on trial for %.0f s", push.id, confirm_after)
            self._report(uplink, "applied", push.id, hash=push.hash, confirm_after=confirm_after)
            problems = await self._watch(uplink, started + confirm_after)
            if problems:
                await self._roll_back(push, uplink, problems, started)
                return
            await asyncio.to_thread(self._confirm, push)
            elapsed = time.monotonic() - started
            log.info("configuration %s confirmed after %.1f s", push.id, elapsed)
            self._report(uplink, "confirmed", push.id, hash=push.hash, seconds=round(elapsed, 3))
        finally:
            self.trial = None

    def _confirm(self, push: Push) -> None:
        self.versions.set_active(push.id, push.hash)
        self.versions.end_trial()

    def problems(self, uplink: str) -> list[str]:
        """What keeps the configuration on trial from being confirmed."""
        view, problems = self.view, []
        service = None if view.uplink is None else view.uplink.services.get(uplink)
        if service is None or not service.connected:
            problems.append(f"uplink {uplink} is not connected")
        for adapter in self._config().adapters:
            running = view.adapters.get(adapter.instance)
            if running is None:
                problems.append(f"adapter {adapter.instance} has not started")
            elif running.state != State.RUNNING:
                problems.append(f"adapter {adapter.instance} is {running.state}")
        return problems

    async def _watch(self, uplink: str, deadline: float) -> list[str]:
        """Wait until the gateway is healthy (no problems: confirmed) or ``deadline`` (the problems then)."""
        while True:
            problems = self.problems(uplink)
            if not problems:
                return []
            if time.monotonic() >= deadline:
                return problems
            await asyncio.sleep(min(TRIAL_POLL, max(0.0, deadline - time.monotonic())))

    async def _roll_back(self, push: Push, uplink: str, reasons: list[str], started: float) -> None:
        trial = self.trial
        assert trial is not None
        log.error("configuration %s rolled back: %s", push.id, "; ".join(reasons))
        previous = self.versions.dir / trial.previous
        data = await asyncio.to_thread(previous.read_bytes)
        await asyncio.to_thread(write_config, self.config_path, data)
        await self._reload()
        await asyncio.to_thread(self.versions.end_trial)
        self.active = (trial.previous_id, file_hash(data))
        self._report(uplink, "rolled_back", push.id, hash=push.hash, reasons=reasons,
                     seconds=round(time.monotonic() - started, 3), active=trial.previous_id)  # fmt: skip

    def recovered(self, trial: Trial) -> None:
        """Report the rollback ``recover`` did at start."""
        self._report(trial.uplink, "rolled_back", trial.id, hash=trial.hash, active=trial.previous_id,
                     reasons=["the gateway stopped during the trial"])  # fmt: skip
        self.active = (trial.previous_id, file_hash(self._read_current()))
