"""When a schedule trigger fires next: cron expressions (croniter) in a time
zone (zoneinfo, so daylight-saving changes are handled by the zone rules),
fixed intervals aligned to the epoch (``every: 15m`` fires at :00, :15, ...),
or the sun's events at the gateway's location (astral)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from croniter import croniter

from edged.rules.config import ScheduleTrigger, SunTrigger


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


class SunSchedule:
    def __init__(self, config: SunTrigger) -> None:
        from astral import Observer  # the rules extra

        self.config = config
        self.observer = Observer(config.latitude or 0.0, config.longitude or 0.0)
        shift = ""
        if config.before is not None:
            shift = f" - {config.before:g} s"
        elif config.after is not None:
            shift = f" + {config.after:g} s"
        self.label = f"sun {config.event}{shift}"

    def next_after(self, now: float) -> float:
        """The first time strictly after ``now`` (epoch seconds); days without the event are skipped."""
        from astral import sun

        event = getattr(sun, self.config.event)
        day = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=1)
        for _ in range(370):  # polar night or day lasts less than a year
            try:
                at = event(self.observer, date=day, tzinfo=dt.UTC).timestamp() + self.config.offset
            except ValueError:  # the sun does not rise or set that day
                at = None
            if at is not None and at > now:
                return float(at)
            day += dt.timedelta(days=1)
        raise ValueError(f"no {self.config.event} within a year at {self.config.latitude}, {self.config.longitude}")
