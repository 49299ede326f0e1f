"""When a schedule trigger fires next: cron expressions (croniter) in a time
zone (zoneinfo, so daylight-saving changes are handled by the zone rules), or
fixed intervals aligned to the epoch (``every: 15m`` fires at :00, :15, ...)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from croniter import croniter

from edged.rules.config import ScheduleTrigger


class Schedule:
    def __init__(self, config: ScheduleTrigger, timezone: str) -> None:
        self.config = config
        self.zone = ZoneInfo(config.timezone or timezone)
        self.label = f"schedule cron {config.cron!r}" if config.cron else f"schedule every {config.every:g} s"

    def next_after(self, now: float) -> float:
        """The first firing time strictly after ``now`` (epoch seconds)."""
        if self.config.every is not None:
            every = self.config.every
            return (now // every + 1) * every
        start = dt.datetime.fromtimestamp(now, self.zone)
        return float(croniter(self.config.cron, start).get_next(float))

    def last_at_or_before(self, now: float) -> float:
        """The latest cron firing time not after ``now`` (cron schedules only)."""
        assert self.config.cron is not None
        start = dt.datetime.fromtimestamp(now, self.zone)
        if croniter.match(self.config.cron, start) and start.second == 0 and start.microsecond == 0:
            return now
        return float(croniter(self.config.cron, start).get_prev(float))
