"""The write API with values no point can take: a clear 422 with strict JSON, never a 500."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.status.conftest import StartDaemon, http_url

SETPOINT = "/api/devices/sim/thermostat/points/setpoint"


def strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the answer: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


async def test_a_value_out_of_the_points_range_is_rejected_with_422_and_strict_json(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    url = http_url(daemon) + SETPOINT
    async with aiohttp.ClientSession() as session:
        for body, why in (
            (b'{"value": 1%s}' % (b"0" * 400), "an integer of 1329 bits, out of range for a float"),
            (b'{"value": NaN}', "expected a finite float, got nan"),
            (b'{"value": -Infinity}', "expected a finite float, got -inf"),
            (b'{"value": 1e999}', "expected a finite float, got inf"),
        ):
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                answer = strict(await response.text())
                assert response.status == 422, answer
            assert (answer["status"], answer["value"]) == ("rejected", None)
            assert why in answer["reason"]
    assert daemon.hub.value("sim/thermostat", "setpoint").value == 21.0
