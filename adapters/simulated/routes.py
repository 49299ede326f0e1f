"""The simulated adapter's operation in the status API, under ``/api/adapters/{instance}/``.

- ``POST outage`` ``{"device": id, "seconds": n}`` (1..3600, default 30):
  the device goes offline, sends nothing and takes no writes for ``n``
  seconds, then comes back. Answers ``{"device": id, "seconds": n}``; 404
  when this adapter has no such device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edged.adapter import JSON, Route, RouteError
from edged.errors import CommandError

if TYPE_CHECKING:
    from edged.adapters.simulated.adapter import SimulatedAdapter

MAX_OUTAGE = 3600  # seconds


async def outage(adapter: SimulatedAdapter, body: JSON) -> JSON:
    device, seconds = body.get("device"), body.get("seconds", 30)
    if not isinstance(device, str):
        raise RouteError(400, 'expected {"device": "<device id>", "seconds": n}')
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_OUTAGE:
        raise RouteError(400, f"seconds must be a whole number from 1 to {MAX_OUTAGE}")
    try:
        adapter.outage(device, seconds)
    except CommandError as exc:
        raise RouteError(404, str(exc)) from exc
    return {"device": device, "seconds": seconds}


ROUTES = [Route("POST", "outage", outage)]
