"""Small pictures besides the timeline: threshold gauges and issues over time.

A gauge shows one screening result against its protocol limit (a bar to the
value, a tick at the limit), which reads faster than comparing two numbers
in a table.  The issues-over-time chart shows, per day, how many issues of a
site were open: whether the backlog shrinks is what a site lead asks first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from adapter.web.svg import Svg
from adapter.web.timeline_svg import MUTED, STATUS_COLOURS

GAUGE_WIDTH, GAUGE_HEIGHT = 150, 18


def threshold_gauge(criterion: dict[str, object], ident: str) -> str:
    """One eligibility criterion's value against its limit; empty when there is no value."""
    value, limit = criterion.get("value"), criterion.get("limit")
    if not isinstance(value, int | float) or not isinstance(limit, int | float) or limit <= 0:
        return ""
    status = str(criterion.get("status", "unknown"))
    scale = max(float(value), float(limit)) * 1.25
    bar = float(value) / scale * (GAUGE_WIDTH - 4)
    tick = float(limit) / scale * (GAUGE_WIDTH - 4) + 2
    svg = Svg(
        GAUGE_WIDTH,
        GAUGE_HEIGHT,
        ident=ident,
        title=f"{criterion.get('criterion')}: {value:g} against limit {limit:g}",
        desc=f"rule {criterion.get('rule')}; {status.replace('_', ' ')}",
        css_class="gauge",
    )
    svg.add("rect", x=2, y=5, width=GAUGE_WIDTH - 4, height=8, rx=2, fill="#edf2f7")
    svg.add("rect", x=2, y=5, width=max(bar, 1.5), height=8, rx=2, fill=STATUS_COLOURS.get(status, MUTED))
    svg.add("line", x1=tick, x2=tick, y1=1, y2=GAUGE_HEIGHT - 1, stroke="#1f2933", stroke_width=2)
    return str(svg)


def open_issues_over_time(
    spans: Iterable[tuple[dt.datetime, dt.datetime | None]], *, today: dt.date, days: int = 60
) -> tuple[str, list[tuple[dt.date, int]]]:
    """A step chart of open issues per day over the last ``days`` days, and its numbers.

    ``spans`` are (first seen, closed at or None) per issue; an issue counts
    as open on a day when it was seen by the end of that day and not yet
    closed.  The numbers come back too, for the table beside the chart.
    """
    intervals = [(_day(first), _day(closed) if closed else None) for first, closed in spans]
    series = []
    for offset in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=offset)
        series.append((day, sum(1 for s, e in intervals if s <= day and (e is None or e > day))))
    width, height, left, bottom = 640, 160, 40, 24
    peak = max([n for _d, n in series] + [1])
    svg = Svg(
        width,
        height,
        ident="issues-over-time",
        title="Open issues per day",
        desc=f"Open issues per day over the last {days} days; today {series[-1][1]}, peak {peak}.",
        css_class="trend",
    )

    def xy(index: int, count: int) -> tuple[float, float]:
        x = left + index / max(len(series) - 1, 1) * (width - left - 10)
        return x, height - bottom - count / peak * (height - bottom - 12)

    for fraction in (0, 0.5, 1):
        level = round(peak * fraction)
        _x, y = xy(0, level)
        svg.add("line", x1=left, x2=width - 10, y1=y, y2=y, stroke="#e4e7eb")
        svg.add("text", x=left - 6, y=y + 4, text_anchor="end", fill=MUTED, font_size=11, text=str(level))
    corners = [xy(index, count) for index, (_day_, count) in enumerate(series)]
    steps = [f"M{corners[0][0]:.1f} {corners[0][1]:.1f}"]
    steps += [f"H{x:.1f} V{y:.1f}" for x, y in corners[1:]]
    svg.add("path", d=" ".join(steps), fill="none", stroke="#3b6ea8", stroke_width=2)
    for index, anchor in ((0, "start"), (len(series) // 2, "middle"), (len(series) - 1, "end")):
        x, _y = xy(index, 0)
        svg.add(
            "text",
            x=x,
            y=height - 6,
            text_anchor=anchor,
            fill=MUTED,
            font_size=11,
            text=series[index][0].isoformat(),
        )
    return str(svg), series


def _day(moment: dt.datetime) -> dt.date:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(dt.UTC).date()
