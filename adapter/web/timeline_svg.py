"""The subject's protocol timeline as one server-rendered SVG picture.

Lanes share one date axis, top to bottom, in protocol order: screening
results against their thresholds (the window shaded), blinatumomab cycles as
bars (pre-transplant and maintenance coloured apart, flagged cycles
outlined), stem-cell collection, WBC and platelet recovery against the
reconstitution thresholds, and MRD results.  Day 0 and the reconstitution
date are vertical lines through every lane.  Each mark carries a ``<title>``
with its numbers, so hovering or a screen reader gives the exact value.

Colours are fixed attributes (not only CSS classes) so the picture looks
the same inline in a page and opened alone from ``timeline.svg``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from adapter.protocol.rules import ProtocolRules
from adapter.web.subject_story import Point, SubjectStory, parse_day
from adapter.web.svg import Svg

WIDTH = 960
LEFT, RIGHT, TOP = 132, 24, 40
STATUS_COLOURS = {"met": "#2f855a", "not_met": "#c53030", "unknown": "#718096"}
PHASE_COLOURS = {"pre_transplant": "#3b6ea8", "maintenance": "#2a9d8f", "unphased": "#8d99ae"}
PHASE_NAMES = {"pre_transplant": "pre-transplant", "maintenance": "maintenance", "unphased": "unphased"}
INK, MUTED, GRID, BAND = "#1f2933", "#52606d", "#e4e7eb", "#edf2f7"
RECOVERY = "#2f855a"


@dataclass(frozen=True)
class _Axis:
    start: dt.date
    end: dt.date

    def x(self, day: dt.date) -> float:
        span = max((self.end - self.start).days, 1)
        return LEFT + (day - self.start).days / span * (WIDTH - LEFT - RIGHT)


def render(story: SubjectStory, rules: ProtocolRules) -> str:
    """The timeline SVG of one subject (a short note when there is nothing to draw)."""
    days = list(_all_days(story))
    title = f"Protocol timeline of {story.subject_id}"
    if not days:
        svg = Svg(
            WIDTH, 60, ident="timeline", title=title, desc="No protocol records yet.", css_class="timeline"
        )
        svg.add("text", x=LEFT, y=34, fill=MUTED, text="No protocol records for this subject yet.")
        return str(svg)
    axis = _Axis(min(days) - dt.timedelta(days=6), max(days) + dt.timedelta(days=6))
    lanes = [
        ("Screening", 40, _screening),
        ("Blinatumomab", 46, _cycles),
        ("Collection", 30, _collection),
        (
            "WBC ×10⁹/L",
            84,
            lambda s, st, a, y, h: _counts(s, st, a, y, h, "wbc", rules.reconstitution.wbc_min),
        ),
        (
            "PLT ×10⁹/L",
            84,
            lambda s, st, a, y, h: _counts(s, st, a, y, h, "platelets", rules.reconstitution.plt_min),
        ),
        ("MRD", 46, _mrd),
    ]
    height = TOP + sum(h for _n, h, _d in lanes) + 34
    svg = Svg(WIDTH, height, ident="timeline", title=title, desc=_description(story), css_class="timeline")
    _grid(svg, axis, TOP, height - 34)
    y = TOP
    for name, lane_height, draw in lanes:
        svg.add("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, stroke=GRID)
        svg.add("text", x=LEFT - 10, y=y + lane_height / 2 + 4, text_anchor="end", fill=INK, text=name)
        draw(svg, story, axis, y, lane_height)
        y += lane_height
    svg.add("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, stroke=MUTED)
    _markers(svg, story, axis, TOP, y)
    return str(svg)


def _all_days(story: SubjectStory) -> Iterable[dt.date]:
    eligibility = story.eligibility or {}
    for key in ("window_start", "anchor_date"):
        if (day := parse_day(eligibility.get(key))) is not None:
            yield day
    for criterion in eligibility.get("criteria", ()):
        if (day := parse_day(criterion.get("date"))) is not None:
            yield day
    for cycle in story.cycles:
        yield from (d for d in (parse_day(cycle["start"]), parse_day(cycle["end"])) if d is not None)
    for record in (story.collection, story.transplant, story.reconstitution):
        for key in ("first_date", "day0", "date"):
            if record and (day := parse_day(record.get(key))) is not None:
                yield day
    for points in story.counts.values():
        yield from (p.day for p in points)
    yield from (d for d in (parse_day(m["date"]) for m in story.mrd) if d is not None)


def _grid(svg: Svg, axis: _Axis, top: float, bottom: float) -> None:
    """Month lines and labels along the bottom."""
    month = dt.date(axis.start.year, axis.start.month, 1)
    months = []
    while month <= axis.end:
        if month >= axis.start:
            months.append(month)
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    step = 1 if len(months) <= 12 else 2
    for index, first in enumerate(months):
        x = axis.x(first)
        svg.add("line", x1=x, x2=x, y1=top, y2=bottom, stroke=GRID)
        if index % step == 0:
            svg.add("text", x=x + 3, y=bottom + 18, fill=MUTED, text=first.strftime("%b %Y"))


def _screening(svg: Svg, story: SubjectStory, axis: _Axis, y: float, h: float) -> None:
    eligibility = story.eligibility
    if not eligibility:
        return
    start, anchor = parse_day(eligibility.get("window_start")), parse_day(eligibility.get("anchor_date"))
    if start is not None and anchor is not None:
        svg.add(
            "rect",
            x=axis.x(start),
            y=y + 4,
            width=max(axis.x(anchor + dt.timedelta(days=1)) - axis.x(start), 2),
            height=h - 8,
            fill=BAND,
            tooltip=f"screening window {start} to {anchor} ({eligibility.get('anchor')} anchor)",
        )
        svg.add("line", x1=axis.x(anchor), x2=axis.x(anchor), y1=y + 4, y2=y + h - 4, stroke=MUTED)
    statuses = [c.get("status", "unknown") for c in eligibility.get("criteria", ())]
    if anchor is not None and statuses:
        summary = " · ".join(
            f"{statuses.count(s)} {s.replace('_', ' ')}"
            for s in ("met", "not_met", "unknown")
            if s in statuses
        )
        svg.add("text", x=axis.x(anchor) + 10, y=y + h / 2 + 4, fill=MUTED, text=summary)
    for index, criterion in enumerate(eligibility.get("criteria", ())):
        day = parse_day(criterion.get("date"))
        if day is None:
            continue
        status = criterion.get("status", "unknown")
        value = criterion.get("value")
        shown = "–" if value is None else f"{value:g} {criterion.get('unit') or ''}".strip()
        svg.add(
            "circle",
            class_=f"screening {status}",
            cx=axis.x(day),
            cy=y + 10 + (index % 3) * 10,
            r=4.5,
            fill=STATUS_COLOURS.get(status, MUTED),
            stroke="#fff",
            data_criterion=criterion.get("criterion"),
            tooltip=f"{criterion.get('criterion')} {shown} on {day} · rule {criterion.get('rule')} · "
            f"{status.replace('_', ' ')}",
        )


def _cycles(svg: Svg, story: SubjectStory, axis: _Axis, y: float, h: float) -> None:
    for cycle in story.cycles:
        start, end = parse_day(cycle["start"]), parse_day(cycle["end"])
        if start is None or end is None:
            continue
        x0, x1 = axis.x(start), axis.x(end + dt.timedelta(days=1))
        phase = cycle.get("phase", "unphased")
        flags = cycle.get("flags") or []
        label = f"{'M' if phase == 'maintenance' else 'C'}{cycle['number']}"
        dose = cycle.get("total_dose_mcg")
        svg.add(
            "rect",
            class_=f"cycle {phase}" + (" flagged" if flags else ""),
            x=x0,
            y=y + 9,
            width=max(x1 - x0, 3),
            height=h - 18,
            rx=3,
            fill=PHASE_COLOURS.get(phase, MUTED),
            stroke="#b7791f" if flags else None,
            stroke_width=2.5 if flags else None,
            data_phase=phase,
            data_number=cycle["number"],
            data_start=cycle["start"],
            data_end=cycle["end"],
            tooltip=f"{PHASE_NAMES.get(phase, phase)} cycle {cycle['number']}: {start} to {end}, "
            f"{cycle.get('infused_days', 0):g} infused days"
            + (f", {dose:g} µg" if dose is not None else "")
            + (f" · flags: {', '.join(flags)}" if flags else ""),
        )
        if x1 - x0 >= 22:
            svg.add(
                "text",
                x=(x0 + x1) / 2,
                y=y + h / 2 + 4,
                text_anchor="middle",
                fill="#fff",
                font_weight="600",
                text=label + (" !" if flags else ""),
            )


def _collection(svg: Svg, story: SubjectStory, axis: _Axis, y: float, h: float) -> None:
    collection = story.collection
    if not collection:
        return
    flags = collection.get("flags") or []
    for text in collection.get("dates", ()):
        day = parse_day(text)
        if day is None:
            continue
        x, cy = axis.x(day), y + h / 2
        svg.add(
            "path",
            class_="collection",
            d=f"M{x:.1f} {cy - 7:.1f} L{x + 7:.1f} {cy:.1f} L{x:.1f} {cy + 7:.1f} L{x - 7:.1f} {cy:.1f} Z",
            fill="#805ad5",
            stroke="#b7791f" if flags else None,
            stroke_width=2 if flags else None,
            tooltip=f"stem-cell collection {day}"
            + (
                f", {collection['days_after_pre_transplant_cycle']} days after the pre-transplant cycle"
                if collection.get("days_after_pre_transplant_cycle") is not None
                else ""
            )
            + (f" · flags: {', '.join(flags)}" if flags else ""),
        )


def _counts(
    svg: Svg, story: SubjectStory, axis: _Axis, y: float, h: float, concept: str, threshold: float
) -> None:
    points: list[Point] = story.counts.get(concept, [])
    top_value = max([p.value for p in points] + [threshold * 1.6])
    inner_top, inner_bottom = y + 8, y + h - 8

    def y_of(value: float) -> float:
        return inner_bottom - min(value, top_value) / top_value * (inner_bottom - inner_top)

    ty = y_of(threshold)
    svg.add("line", x1=LEFT, x2=WIDTH - RIGHT, y1=ty, y2=ty, stroke=RECOVERY, stroke_dasharray="4 3")
    svg.add(
        "text",
        x=WIDTH - RIGHT - 2,
        y=ty - 3,
        text_anchor="end",
        fill=RECOVERY,
        font_size=11,
        text=f"≥ {threshold:g}",
    )
    if not points:
        svg.add("text", x=LEFT + 8, y=y + h / 2 + 4, fill=MUTED, text="no results")
        return
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{axis.x(p.day):.1f} {y_of(p.value):.1f}" for i, p in enumerate(points)
    )
    svg.add("path", d=path, fill="none", stroke="#4a5568", stroke_width=1.5)
    for point in points:
        met = point.value >= threshold
        svg.add(
            "circle",
            class_=f"count {concept}",
            cx=axis.x(point.day),
            cy=y_of(point.value),
            r=2.8,
            fill=RECOVERY if met else "#4a5568",
            tooltip=f"{concept} {point.value:g} ×10⁹/L on {point.day}",
        )


def _mrd(svg: Svg, story: SubjectStory, axis: _Axis, y: float, h: float) -> None:
    for result in story.mrd:
        day = parse_day(result.get("date"))
        if day is None:
            continue
        x = axis.x(day)
        value = result.get("value")
        text = (
            "–" if value is None else f"{result.get('comparator') or ''}{value:g}{result.get('unit') or ''}"
        )
        method = "flow" if result.get("method") == "flow_cytometry" else "NGS"
        cy = y + 14 if result.get("method") == "flow_cytometry" else y + h - 14
        shape = "circle" if method == "flow" else "rect"
        tooltip = f"MRD by {method} on {day}: {text}"
        if shape == "circle":
            svg.add("circle", class_="mrd", cx=x, cy=cy, r=4.5, fill="#2b6cb0", tooltip=tooltip)
        else:
            svg.add(
                "rect", class_="mrd", x=x - 4, y=cy - 4, width=8, height=8, fill="#2c7a7b", tooltip=tooltip
            )
        svg.add("text", x=x + 7, y=cy + 4, fill=INK, font_size=10, text=text)


def _markers(svg: Svg, story: SubjectStory, axis: _Axis, top: float, bottom: float) -> None:
    """Day 0 and reconstitution: vertical lines through every lane, labelled above."""
    day0 = story.day0
    if day0 is not None:
        x = axis.x(day0)
        svg.add("line", class_="day0", x1=x, x2=x, y1=top - 6, y2=bottom, stroke=INK, stroke_width=2)
        svg.add("text", x=x + 4, y=top - 24, fill=INK, font_weight="600", text=f"Day 0 · {day0}")
    recon = parse_day(story.reconstitution.get("date")) if story.reconstitution else None
    if recon is not None and story.reconstitution is not None:
        x = axis.x(recon)
        svg.add(
            "line",
            class_="reconstitution",
            x1=x,
            x2=x,
            y1=top - 6,
            y2=bottom,
            stroke=RECOVERY,
            stroke_width=2,
            stroke_dasharray="6 4",
            tooltip=f"reconstitution {recon}: WBC {story.reconstitution.get('wbc'):g}, "
            f"PLT {story.reconstitution.get('plt'):g} ×10⁹/L",
        )
        svg.add(
            "text", x=x + 4, y=top - 10, fill=RECOVERY, font_weight="600", text=f"Reconstitution · {recon}"
        )


def _description(story: SubjectStory) -> str:
    """A text equivalent of the picture for screen readers."""
    phases: dict[str, int] = {}
    for cycle in story.cycles:
        phases[cycle.get("phase", "unphased")] = phases.get(cycle.get("phase", "unphased"), 0) + 1
    parts = [
        ", ".join(f"{n} {PHASE_NAMES.get(p, p)} cycle{'s' if n != 1 else ''}" for p, n in phases.items())
        or "no blinatumomab cycles"
    ]
    if story.day0:
        parts.append(f"transplant day 0 on {story.day0}")
    if story.reconstitution:
        parts.append(f"reconstitution on {story.reconstitution.get('date')}")
    if story.collection:
        parts.append(f"collection on {', '.join(story.collection.get('dates', []))}")
    parts.append(f"{len(story.mrd)} MRD result{'s' if len(story.mrd) != 1 else ''}")
    return "; ".join(parts) + "."
