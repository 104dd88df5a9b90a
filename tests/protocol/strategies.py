"""Hypothesis strategies for the protocol property tests: real Facts on the site's calendar.

Facts are built with the same factory as the hand-written tests
(conftest.fact), so they look exactly as the mapping stage hands them over:
``local_date`` is the site-local day (UTC+08:00) of the instant, whatever
offset the source wrote it in.  Values are decimals at a lab's precision
(``decimals``), because that is what sources send; a float a few ulps from a
limit is a unit-conversion artefact the thresholds module handles separately.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st

from adapter.mapping.facts import Fact
from adapter.protocol.rules import ProtocolRules, load_rules

from .conftest import MAPPING_DIR, SITE_TZ, fact

# hypothesis does not mix with function-scoped fixtures, so the real rules are loaded once here.
RULES: ProtocolRules = load_rules(MAPPING_DIR)

# Modest budgets keep the whole property set fast on a 2-core machine: drawing a
# timeline of Facts costs far more than deriving from it, so timelines get fewer.
BUDGET = settings(max_examples=200, deadline=None)
TIMELINE_BUDGET = settings(max_examples=60, deadline=None)

# How a source may have written an instant: the site's own offset, UTC, and far-away offsets.
OFFSETS = tuple(dt.timezone(dt.timedelta(hours=h)) for h in (8, 0, -5, 14, -12))

PROCEDURE_STATUSES = (
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
)


def exact(low: float | str, high: float | str, places: int) -> st.SearchStrategy[Decimal]:
    """A decimal with at most ``places`` decimals in [low, high]: a value as the lab wrote it."""
    return st.decimals(Decimal(str(low)), Decimal(str(high)), places=places)


def decimals(low: float | str, high: float | str, places: int) -> st.SearchStrategy[float]:
    """Like ``exact``, as the float a Fact carries."""
    return exact(low, high, places).map(float)


@st.composite
def moments(draw: st.DrawFn, first: dt.date, last: dt.date) -> dt.datetime:
    """An instant on a site-local day in [first, last], written in some UTC offset."""
    day = draw(st.dates(first, last))
    minute = draw(st.integers(0, 24 * 60 - 1))
    local = dt.datetime.combine(day, dt.time(), SITE_TZ) + dt.timedelta(minutes=minute)
    return local.astimezone(draw(st.sampled_from(OFFSETS)))


def comparators(censored_share: int = 4) -> st.SearchStrategy[str | None]:
    """Mostly plain values, sometimes a censored one (``<0.1``) as FHIR Quantity.comparator allows."""
    return st.sampled_from([None] * censored_share + ["<", "<=", ">", ">="])


@st.composite
def procedures(
    draw: st.DrawFn,
    concept: str,
    first: dt.date,
    last: dt.date,
    *,
    prefix: str,
    max_size: int = 5,
    statuses: Sequence[str] = PROCEDURE_STATUSES,
) -> list[Fact]:
    """Procedures of one concept with any status and unique references."""
    n = draw(st.integers(0, max_size))
    return [
        fact(
            concept,
            draw(moments(first, last)),
            status=draw(st.sampled_from(statuses)),
            ref=f"Procedure/{prefix}{index}",
        )
        for index in range(n)
    ]


def rewritten(facts: Sequence[Fact], offset: dt.timezone) -> list[Fact]:
    """The same facts with their instants written in another UTC offset (same instants)."""
    return [
        f.model_copy(
            update={
                "effective_start": f.effective_start.astimezone(offset),
                "effective_end": None if f.effective_end is None else f.effective_end.astimezone(offset),
            }
        )
        for f in facts
    ]


def renamed(facts: Sequence[Fact], prefix: str) -> list[Fact]:
    """The facts under fresh references, so they can be added beside the originals."""
    return [
        f.model_copy(update={"source_ref": f"{f.source_ref.split('/')[0]}/{prefix}{index}"})
        for index, f in enumerate(facts)
    ]
