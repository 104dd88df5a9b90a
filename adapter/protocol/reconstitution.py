"""Haematopoietic reconstitution after the autologous transplant.

The protocol starts blinatumomab maintenance "after achieving reconstitution
(WBC >= 3 x 10^9/L, PLT >= 50 x 10^9/L)".  The date is the first local day
after day 0 on which both are met.  By default both results must come from the
same local day (``max_days_apart = 0``); a site whose CBCs are split across
days can allow N days apart, and the date is then the later of the pair,
because that is when both were known.  Any qualifying result of the day counts
(a second, lower count the same day does not undo it): the rule asks whether
the threshold was reached, not whether it held.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from adapter.mapping.facts import Fact
from adapter.protocol import records, timeline
from adapter.protocol.context import SubjectContext
from adapter.protocol.rules import ReconstitutionRules
from adapter.protocol.thresholds import Bound, judge

WBC = "wbc"
PLATELETS = "platelets"
NATURAL_KEY = "reconstitution"


def _qualifying(facts: Sequence[Fact], concept: str, limit: float, day0: dt.date) -> list[tuple[Fact, float]]:
    """Results after day 0 that meet the limit, the first per local day, by date."""
    first_per_day: dict[dt.date, tuple[Fact, float]] = {}
    for fact in timeline.of_concept(facts, concept):
        if fact.local_date <= day0 or fact.value is None:
            continue
        if judge(fact.value, fact.comparator, Bound.AT_LEAST, limit) is records.CriterionStatus.MET:
            first_per_day.setdefault(fact.local_date, (fact, fact.value))
    return [first_per_day[day] for day in sorted(first_per_day)]


def derive_reconstitution(
    facts: Sequence[Fact],
    subject: SubjectContext,
    rules: ReconstitutionRules,
    day0: dt.date | None,
) -> records.Reconstitution | None:
    """The Reconstitution record, or None before day 0 or before both counts recover."""
    if day0 is None:
        return None
    wbc = _qualifying(facts, WBC, rules.wbc_min, day0)
    plt = _qualifying(facts, PLATELETS, rules.plt_min, day0)
    best: tuple[dt.date, tuple[Fact, float], tuple[Fact, float]] | None = None
    for w in wbc:
        for p in plt:
            if abs((w[0].local_date - p[0].local_date).days) > rules.max_days_apart:
                continue
            date = max(w[0].local_date, p[0].local_date)
            # Earliest date wins; on a tie the first pair found (both lists are by date).
            if best is None or date < best[0]:
                best = (date, w, p)
    if best is None:
        return None
    date, (wbc_fact, wbc_value), (plt_fact, plt_value) = best
    return records.Reconstitution(
        **subject.record_fields(
            records.RecordType.RECONSTITUTION,
            NATURAL_KEY,
            on=date,
            day0=day0,
            evidence=(wbc_fact.source_ref, plt_fact.source_ref),
        ),
        date=date,
        wbc=wbc_value,
        plt=plt_value,
    )
