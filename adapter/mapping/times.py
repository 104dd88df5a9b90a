"""Source times to aware datetimes and site-local calendar days.

FHIR ``dateTime`` may be a year, a year-month, a date, or a date-time with an
offset (https://hl7.org/fhir/R4/datatypes.html#dateTime).  Protocol rules
count local calendar days at the site, so a date-only value is placed at local
midnight, a date-time without an offset (invalid FHIR, common in practice) is
read in the site's timezone, and anything coarser than a day is refused:
guessing the day of a "2025-03" result could move it across a screening
window boundary.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


class ImpreciseTime(ValueError):
    """The source time is coarser than a day."""


def to_aware(value: object, tz: ZoneInfo) -> dt.datetime | None:
    """An aware datetime for a parsed FHIR date/dateTime/instant, or None if absent."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=tz)
    if isinstance(value, str):
        text = value.strip()
        if len(text) in (4, 7):  # "2025" or "2025-03"
            raise ImpreciseTime(f"time {text!r} is not precise to the day")
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ImpreciseTime(f"time {text!r} is not a valid FHIR dateTime") from exc
        return to_aware(parsed, tz)
    raise ImpreciseTime(f"unexpected time value of type {type(value).__name__}")


def local_date(moment: dt.datetime, tz: ZoneInfo) -> dt.date:
    """The site-local calendar day of an aware datetime."""
    return moment.astimezone(tz).date()
