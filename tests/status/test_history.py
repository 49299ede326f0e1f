"""The last hour of each numeric point, for the page's sparklines: one mean
per 30 s, a fixed budget per point and a cap on the points, served by
``GET /api/history``."""

from __future__ import annotations

import tracemalloc

import aiohttp

from edged.model import Command, DeviceRemoved, Quality, Reading
from edged.status.history import PointHistory, RecentCommands, Trend
from tests.status.conftest import StartDaemon, http_url

NOW = 1_800_000_000.0  # a multiple of 30 s


def test_one_mean_per_step_for_the_last_hour_only() -> None:
    history = PointHistory()
    readings = [Reading("d", "t", 20.0, NOW - 3 * 3600)]  # older than the hour: gone once newer steps come
    readings += [Reading("d", "t", 20.0 + step, NOW - 3600 + 30 * step) for step in range(1, 120)]
    readings += [Reading("d", "t", 1.0, NOW + 1), Reading("d", "t", 3.0, NOW + 29)]  # one step: their mean
    readings += [Reading("d", "t", 99.0, NOW + 5, Quality.BAD), Reading("d", "on", True, NOW), Reading("d", "s", "x", NOW)]
    history.record(readings)
    series = history.series("d", "t", now=NOW + 29)
    assert series is not None
    assert series["step"] == 30.0 and series["start"] == NOW - 3600 + 30
    assert len(series["values"]) == 120
    assert series["values"][:2] == [21.0, 22.0] and series["values"][-2:] == [139.0, 2.0]
    assert set(history.rings) == {("d", "t")}, "bools, text and bad values have no trend"


def test_gaps_are_null_and_an_idle_point_ages_out() -> None:
    history = PointHistory()
    history.record([Reading("d", "t", 1.0, NOW), Reading("d", "t", 2.0, NOW + 90)])
    assert history.series("d", "t", now=NOW + 90)["values"] == [1.0, None, None, 2.0]  # type: ignore[index]
    assert history.series("d", "t", now=NOW + 90 + 3600)["values"] == []  # type: ignore[index]


def test_points_past_the_cap_get_no_history_and_a_removed_device_frees_its_own() -> None:
    history = PointHistory(max_points=2)
    history.record([Reading("a", "x", 1, NOW), Reading("a", "y", 1, NOW), Reading("b", "x", 1, NOW)])
    assert set(history.rings) == {("a", "x"), ("a", "y")}
    assert history.untracked == 1
    history.on_event(DeviceRemoved("a"))
    history.record([Reading("b", "x", 1, NOW)])
    assert set(history.rings) == {("b", "x")}


def test_memory_for_the_most_points_stays_within_its_budget() -> None:
    """20,000 points (status.http.history_points: 20000): measured, and held under 24 MB (1.2 KB a
    point). A point's ring is its full hour from its first reading on, so a few steps measure what a
    full hour takes."""
    points = 20_000
    history = PointHistory(max_points=points)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for step in range(3):
            history.record([Reading(f"dev{d}", f"p{p}", float(step), NOW + 30 * step)
                            for d in range(2_000) for p in range(10)])  # fmt: skip
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(history.rings) == points
    print(f"history of {points} points x 120 samples: {used / 1e6:.1f} MB ({used / points:.0f} B a point)")
    assert used < 24e6


def test_the_uplink_trend_keeps_an_hour_of_samples() -> None:
    trend = Trend(step=10.0)
    for i in range(400):
        trend.sample({"mqtt.connected": 1.0, "outbox.depth": float(i)} | ({"late": 2.0} if i == 399 else {}), now=NOW + i)
    document = trend.json()
    assert len(document["times"]) == 360 and document["series"]["outbox.depth"][-1] == 399.0
    assert document["series"]["late"][-2:] == [None, 2.0]


async def test_the_api_serves_a_devices_history_and_the_recent_commands(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(interval="50ms")
    assert daemon.status is not None
    result = await daemon.hub.execute(Command("sim/thermostat", "setpoint", 22.5))
    assert result.ok
    async with aiohttp.ClientSession() as session:
        async with session.get(http_url(daemon) + "/api/history", params={"device": "sim/thermostat"}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["device"] == "sim/thermostat"
        assert 21 < body["points"]["setpoint"]["values"][-1] <= 22.5, "this step's mean, the new setpoint in it"
        assert body["points"]["setpoint"]["step"] == 30.0
        assert "mode" not in body["points"] or body["points"]["mode"]["values"]
        async with session.get(http_url(daemon) + "/api/history", params={"device": "sim/relay", "point": "nope"}) as response:
            assert response.status == 404
        async with session.get(http_url(daemon) + "/api/history") as response:
            assert response.status == 400
        async with session.get(http_url(daemon) + "/api/status") as response:
            commands = (await response.json())["commands"]
        assert commands[0] | {"ts": 0, "time": ""} == {
            "device": "sim/thermostat", "key": "setpoint", "value": 22.5, "origin": "api", "status": "ok",
            "reason": None, "ts": 0, "time": "",
        }


def test_recent_commands_are_newest_first_and_bounded() -> None:
    from edged.model import CommandResult, CommandStatus

    recent = RecentCommands(size=2)
    for value in (1, 2, 3):
        recent.on_event(CommandResult(Command("d", "k", value), CommandStatus.OK, None, NOW))
    assert [c["value"] for c in recent.json()] == [3, 2]
