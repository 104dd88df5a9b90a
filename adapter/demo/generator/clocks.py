"""Local wall-clock times and the UTC offsets the demo sites write them with.

Sites chart in local time with an offset while servers stamp
``meta.lastUpdated`` in UTC; protocol days are local days, so the DST and
near-midnight cases must come out exactly as a real EHR would write them.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone

from adapter.demo.generator.profile import SiteProfile


def _nth_sunday(year: int, month: int, n: int) -> datetime:
    first = datetime(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def us_central_offset(local: datetime) -> timedelta:
    """UTC offset of US Central time for a local wall-clock time.

    Hand-rolled US rule (DST from the 2nd Sunday of March to the 1st Sunday of
    November, 02:00 local) instead of ``zoneinfo``: the output must not depend
    on whether, or which version of, a tz database is installed.
    """
    start = _nth_sunday(local.year, 3, 2).replace(hour=2)
    end = _nth_sunday(local.year, 11, 1).replace(hour=2)
    return timedelta(hours=-5) if start <= local < end else timedelta(hours=-6)


def china_offset(local: datetime) -> timedelta:
    """China Standard Time: +08:00 all year, no DST."""
    return timedelta(hours=8)


def stamp(site: SiteProfile, local: datetime) -> str:
    """A FHIR dateTime in the site's local time with its UTC offset."""
    return local.replace(tzinfo=timezone(site.utc_offset(local))).isoformat(timespec="seconds")


def server_instant(site: SiteProfile, local: datetime) -> str:
    """A FHIR instant in UTC, as servers write ``meta.lastUpdated``."""
    utc = local - site.utc_offset(local)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def elapsed(site: SiteProfile, local: datetime, duration: timedelta) -> datetime:
    """The local wall-clock time ``duration`` of real time after ``local``.

    Infusion pumps count hours, not wall-clock days: a 48 h bag hung the day
    before a DST change comes down at a different clock time.
    """
    end_utc = local - site.utc_offset(local) + duration
    for offset in (site.utc_offset(local), site.utc_offset(local + duration)):
        if site.utc_offset(end_utc + offset) == offset:
            return end_utc + offset
    return end_utc + site.utc_offset(local + duration)


def local_time(day: date, hour: int, minute: int = 0) -> datetime:
    """A naive local wall-clock time; :func:`stamp` adds the site's offset when written."""
    return datetime.combine(day, time(hour, minute))


def morning_draw(rng: random.Random, day: date, first_hour: int = 5, last_hour: int = 7) -> datetime:
    """A blood draw time: ward phlebotomy rounds are early in the morning."""
    return local_time(day, rng.randint(first_hour, last_hour), rng.randrange(60))
