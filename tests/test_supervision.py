"""One adapter crashing is logged and restarted, and a rule naming a point no device has is a warning;
the rest of the gateway runs on."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

from edged import adapters
from edged.adapter import Adapter, AdapterConfig
from edged.config import load_config
from edged.daemon import Daemon
from edged.errors import AdapterError
from edged.model import Command, Device, Point, Reading
from tests.conftest import Watch


class FlakyConfig(AdapterConfig):
    type: Literal["flaky"]


class FlakyAdapter(Adapter[FlakyConfig]):
    """Its polling task dies on the first start; after a restart it works."""

    starts = 0

    async def start(self) -> None:
        type(self).starts += 1
        self.add_device(Device(self.device_id("d"), self.name, points={"x": Point("x")}))
        self.tasks.spawn(self._poll())

    async def _poll(self) -> None:
        if type(self).starts == 1:
            raise ConnectionResetError("the device hung up")
        self.set_online(self.device_id("d"), True)
        self.publish([Reading(self.device_id("d"), "x", 1.0, 0.0)])

    async def stop(self) -> None:
        pass

    async def write(self, command: Command) -> None:
        pass


@pytest.fixture
def flaky_type(monkeypatch):
    monkeypatch.setitem(adapters.registry(), "flaky", adapters.Entry(f"{__name__}:FlakyConfig", f"{__name__}:FlakyAdapter"))
    FlakyAdapter.starts = 0


async def test_crashing_adapter_is_restarted_and_others_keep_running(tmp_path, flaky_type, caplog):
    (tmp_path / "c.yaml").write_text(
        "status: {http: {enabled: false}}\n"
        "adapters:\n"
        "  - {type: flaky, name: flaky}\n"
        "  - {type: simulated, name: sim, interval: 20ms, devices: [{id: m, kind: energy_meter}]}\n"
    )
    daemon = Daemon(load_config(tmp_path / "c.yaml"), tmp_path / "c.yaml")
    watch = Watch(daemon.hub)
    running = asyncio.create_task(daemon.run())
    try:
        await watch.until(lambda: daemon.hub.value("flaky/d", "x"))
        assert FlakyAdapter.starts == 2
        assert "adapter:flaky crashed" in caplog.text
        assert "ConnectionResetError: the device hung up" in caplog.text
        assert daemon.hub.devices["sim/m"].online
        assert daemon.view.health_problems() == []
    finally:
        daemon.stop()
        await running


class NoRadioAdapter(FlakyAdapter):
    """Fails to start with an error it has already explained (no hardware)."""

    restarted: asyncio.Event

    async def start(self) -> None:
        type(self).starts += 1
        if type(self).starts == 2:
            type(self).restarted.set()
        raise AdapterError("no radio at /dev/ttyACM0")


async def test_an_explained_failure_is_one_line_and_retried(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(adapters.registry(), "flaky", adapters.Entry(f"{__name__}:FlakyConfig", f"{__name__}:NoRadioAdapter"))
    NoRadioAdapter.starts = 0
    NoRadioAdapter.restarted = asyncio.Event()
    (tmp_path / "c.yaml").write_text("status: {http: {enabled: false}}\nadapters:\n  - {type: flaky, name: radio}\n")
    daemon = Daemon(load_config(tmp_path / "c.yaml"), tmp_path / "c.yaml")
    running = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(10):
            await NoRadioAdapter.restarted.wait()  # after the first backoff delay (1 s)
        failures = [r for r in caplog.records if "adapter:radio failed: no radio at /dev/ttyACM0" in r.getMessage()]
        assert failures and all(r.exc_info is None for r in failures)
    finally:
        daemon.stop()
        await running


async def test_a_rule_naming_a_missing_point_is_a_warning_and_the_rest_runs(tmp_path, caplog):
    (tmp_path / "c.yaml").write_text(
        "status: {http: {enabled: false}}\n"
        "adapters:\n"
        "  - {type: simulated, name: sim, interval: 20ms, devices: [{id: relay, kind: relay}]}\n"
        "rules:\n"
        "  - id: typo\n"
        "    triggers: [{type: change, point: sim/relay.power}]\n"
        "    actions: [{type: write, point: sim/relay.rely, value: true}]\n"
    )
    daemon = Daemon(load_config(tmp_path / "c.yaml"), tmp_path / "c.yaml")
    running = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 10)
        await asyncio.wait_for(daemon.rules.started.wait(), 10)
        warning = "rule typo: actions[0].point: device sim/relay has no point 'rely' (it has relay, power)"
        assert warning in caplog.text
        assert "typo" in daemon.rules.rules  # the rule runs (its write will be refused with a reason)
    finally:
        daemon.stop()
        await running


class ExplainingAdapter(FlakyAdapter):
    """Runs, but cannot reach its server for a reason it knows."""

    def health_problems(self) -> list[str]:
        return [f"adapter {self.name}: server certificate mismatch"]


async def test_an_adapter_s_own_health_problems_reach_the_daemon_s_health(tmp_path, monkeypatch):
    monkeypatch.setitem(adapters.registry(), "flaky", adapters.Entry(f"{__name__}:FlakyConfig", f"{__name__}:ExplainingAdapter"))
    FlakyAdapter.starts = 1  # its polling works from the start
    (tmp_path / "c.yaml").write_text("status: {http: {enabled: false}}\nadapters:\n  - {type: flaky, name: plc}\n")
    daemon = Daemon(load_config(tmp_path / "c.yaml"), tmp_path / "c.yaml")
    watch = Watch(daemon.hub)
    running = asyncio.create_task(daemon.run())
    try:
        await watch.until(lambda: daemon.hub.value("plc/d", "x"))
        assert daemon.view.health_problems() == ["adapter plc: server certificate mismatch"]
    finally:
        daemon.stop()
        await running
