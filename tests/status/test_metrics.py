"""/metrics is valid Prometheus text and its counters move as readings flow."""

from __future__ import annotations

import asyncio
import socket
import time
from types import SimpleNamespace

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from edged import __version__
from edged.metrics import Metrics
from tests.conftest import Watch
from tests.status.conftest import StartDaemon, http_url


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with session.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return samples(await response.text())


async def test_metrics_parse_and_move_when_readings_flow(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    watch = Watch(daemon.hub)
    async with aiohttp.ClientSession() as session:
        await watch.until(lambda: daemon.hub.readings_in > 0)
        first = await scrape(session, http_url(daemon))
        seen = daemon.hub.readings_in
        await watch.until(lambda: daemon.hub.readings_in > seen + 10)
        second = await scrape(session, http_url(daemon))

    sim = (("adapter", "sim"),)
    assert second[("edged_readings_in_total", ())] > first[("edged_readings_in_total", ())] > 0
    assert second[("edged_adapter_readings_total", sim)] > first[("edged_adapter_readings_total", sim)]
    assert second[("edged_adapter_errors_total", sim)] == 0
    assert second[("edged_adapter_state", (("adapter", "sim"), ("state", "running")))] == 1
    assert second[("edged_adapter_state", (("adapter", "sim"), ("state", "stopped")))] == 0
    assert second[("edged_devices", (("adapter", "sim"), ("online", "true")))] == 2
    assert ("edged_event_loop_lag_seconds", ()) in second
    assert ("edged_info", (("gateway", "status-test"), ("version", __version__))) in second
    # Parts that are not configured are absent, not zero.
    assert not any(name.startswith(("edged_outbox", "edged_uplink", "edged_rule")) for name, _ in second)


def test_rules_outbox_and_uplink_counters_are_exported_when_present(tmp_path) -> None:
    from edged.hub import Hub
    from edged.outbox import OutboxStats
    from edged.part import Histogram
    from edged.rules.engine import RulesStats
    from edged.uplink.service import UplinkStats
    from edged.view import GatewayView

    outbox = OutboxStats(depth=120, bytes=4096, rows=3, oldest_age=7.5, accepted=1000, acked=880, dropped_full=5, expired=2)
    def service(name: str, connected: int) -> SimpleNamespace:
        return SimpleNamespace(name=name, labels={"uplink": name}, stats=lambda: UplinkStats(
            connected=connected, acked=880, reconnects=3, refused={"Not authorized (0x87)": 4}, waiting=120))  # fmt: skip

    services = {"cloud": service("cloud", 1), "site": service("site", 0)}
    uplink = SimpleNamespace(outbox=SimpleNamespace(stats=lambda: outbox, labels={}), services=services)
    latency = Histogram()
    for seconds in (0.001, 0.002, 0.003, 0.010, 7.0):
        latency.observe(seconds)
    rules = SimpleNamespace(labels={}, stats=lambda: RulesStats(firings=42, errors=1, latency=latency))
    view = GatewayView("gw", Hub(), uplink=uplink, rules=rules, loop_lag=0.004)  # type: ignore[arg-type]
    got = samples(Metrics(view).render().decode())
    assert got[("edged_outbox_depth_readings", ())] == 120
    assert got[("edged_outbox_oldest_age_seconds", ())] == 7.5
    assert got[("edged_outbox_dropped_total", (("reason", "full"),))] == 5
    assert got[("edged_outbox_dropped_total", (("reason", "expired"),))] == 2
    assert got[("edged_outbox_acked_total", ())] == 880
    assert got[("edged_uplink_connected", (("uplink", "cloud"),))] == 1
    assert got[("edged_uplink_connected", (("uplink", "site"),))] == 0, "each uplink has its own samples"
    assert got[("edged_uplink_reconnects_total", (("uplink", "cloud"),))] == 3
    assert got[("edged_uplink_waiting_readings", (("uplink", "site"),))] == 120
    assert got[("edged_uplink_refused_total", (("reason", "Not authorized (0x87)"), ("uplink", "cloud")))] == 4
    assert got[("edged_rule_firings_total", ())] == 42
    assert got[("edged_rule_latency_seconds_bucket", (("le", "0.001"),))] == 1
    assert got[("edged_rule_latency_seconds_bucket", (("le", "0.0025"),))] == 2
    assert got[("edged_rule_latency_seconds_bucket", (("le", "0.01"),))] == 4
    assert got[("edged_rule_latency_seconds_bucket", (("le", "5"),))] == 4
    assert got[("edged_rule_latency_seconds_bucket", (("le", "+Inf"),))] == 5
    assert got[("edged_rule_latency_seconds_count", ())] == 5
    assert abs(got[("edged_rule_latency_seconds_sum", ())] - 7.016) < 1e-9
    assert got[("process_resident_memory_bytes", ())] > 0 and ("process_cpu_seconds_total", ()) in got
    assert got[("edged_event_loop_lag_seconds", ())] == 0.004


UPLINK_AND_RULES = """\
uplink: {{type: mqtt, host: 127.0.0.1, port: {port}, connect_timeout: 1s}}
rules:
  - id: warm
    triggers: [{{type: change, point: sim/thermostat.temperature}}]
    actions: [{{type: log, message: temperature changed}}]
"""


async def test_outbox_uplink_and_rule_metrics_come_from_the_running_parts(start_daemon: StartDaemon) -> None:
    # Nothing listens on the uplink's port: readings pile up in the outbox.
    daemon = await start_daemon(extra=UPLINK_AND_RULES.format(port=free_port()))
    watch = Watch(daemon.hub)
    await watch.until(lambda: daemon.uplink is not None and daemon.rules is not None)
    async with aiohttp.ClientSession() as session:
        await watch.until(lambda: daemon.uplink.outbox.depth > 0 and daemon.rules.stats().firings > 0)
        first = await scrape(session, http_url(daemon))
        depth = daemon.uplink.outbox.depth
        await watch.until(lambda: daemon.uplink.outbox.depth > depth)
        second = await scrape(session, http_url(daemon))
        async with session.get(http_url(daemon) + "/api/status") as response:
            status = await response.json()

    assert second[("edged_outbox_depth_readings", ())] > first[("edged_outbox_depth_readings", ())] > 0
    assert second[("edged_outbox_accepted_total", ())] >= second[("edged_outbox_depth_readings", ())]
    assert second[("edged_uplink_connected", (("uplink", "uplink"),))] == 0
    assert second[("edged_uplink_acked_total", (("uplink", "uplink"),))] == 0
    assert second[("edged_uplink_waiting_readings", (("uplink", "uplink"),))] > 0
    assert ("edged_outbox_oldest_age_seconds", ()) in second
    assert second[("edged_rule_firings_total", ())] >= 1
    assert ("edged_rule_latency_seconds_count", ()) in second
    assert status["outbox"]["depth"] > 0 and status["uplink"]["connected"] is False
    assert status["uplinks"]["uplink"]["connected"] is False and status["uplinks"]["uplink"]["type"] == "mqtt"
    assert status["rules"]["firings"] >= 1 and status["rules"]["recent"][0]["rule_id"] == "warm"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_readings_delivered_are_counted_per_adapter(start_daemon: StartDaemon, tmp_path) -> None:
    from tests.uplink.peers import Broker

    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    try:
        daemon = await start_daemon(extra=UPLINK_AND_RULES.format(port=broker.port))
        watch = Watch(daemon.hub)
        await watch.until(lambda: daemon.uplink is not None and daemon.uplink.services["uplink"].delivered["sim"] > 0)
        async with aiohttp.ClientSession() as session:
            metrics = await scrape(session, http_url(daemon))
    finally:
        broker.stop()
    delivered = metrics[("edged_adapter_readings_delivered_total", (("adapter", "sim"), ("uplink", "uplink")))]
    assert 0 < delivered <= metrics[("edged_adapter_readings_total", (("adapter", "sim"),))]


async def test_uptime_is_not_moved_by_a_step_of_the_wall_clock(start_daemon: StartDaemon, monkeypatch) -> None:
    from edged.status.views import status_json

    daemon = await start_daemon()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 2 * 86400)  # a time sync after boot: two days forward
    assert status_json(daemon.view)["uptime"] < 3600
    uptime = next(line for line in Metrics(daemon.view).render().decode().splitlines() if line.startswith("edged_uptime_seconds "))
    assert float(uptime.split()[1]) < 3600


async def test_the_exposition_passes_promtool(start_daemon: StartDaemon) -> None:
    """Counters end in _total, units are in names, histograms have buckets: what Prometheus's own linter checks."""
    daemon = await start_daemon(extra=UPLINK_AND_RULES.format(port=free_port()))
    watch = Watch(daemon.hub)
    await watch.until(lambda: daemon.rules is not None and daemon.rules.stats().firings > 0)
    async with aiohttp.ClientSession() as session, session.get(http_url(daemon) + "/metrics") as response:
        text = await response.read()
    promtool = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    said, _ = await asyncio.wait_for(promtool.communicate(text), 30)
    assert promtool.returncode == 0, said.decode()
    assert b"edged_rule_latency_seconds_bucket" in text and b"process_cpu_seconds_total" in text
