"""Properties of reconstitution over generated blood counts (hypothesis).

The rule (reconstitution.py, protocol.toml, docs/design.md §4): the
reconstitution date is the earliest site-local day strictly after day 0 on
which a WBC result >= wbc_min and a platelet result >= plt_min are both
known, the two at most ``max_days_apart`` local days apart (0: the same day),
the date being the later of the pair.  Any qualifying result counts; a lower
result the same or a later day does not undo it.  From that rule:

* the date is after day 0, and its two results qualify and lie within the
  allowed distance, the later of them on the date;
* no earlier day has a qualifying pair, and a qualifying pair always gives a
  record (checked against a brute-force search over all pairs);
* a result measured after both deciding results never changes the record;
  any added result can only bring the date earlier or leave it;
* stricter thresholds or a later day 0 never bring it earlier; a larger
  ``max_days_apart`` never makes it later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mapping.facts import Fact
from adapter.protocol import reconstitution
from adapter.protocol.records import Reconstitution
from adapter.protocol.rules import ProtocolRules

from .conftest import SUBJECT, fact, tuned
from .strategies import (
    OFFSETS,
    RULES,
    TIMELINE_BUDGET,
    comparators,
    decimals,
    moments,
    rewritten,
)

ORACLE_BUDGET = settings(max_examples=120, deadline=None)
DAY0 = dt.date(2025, 4, 1)
FIRST, LAST = DAY0 - dt.timedelta(days=2), DAY0 + dt.timedelta(days=14)
R = RULES.reconstitution
VALUES = {
    "wbc": st.one_of(decimals(0, 8, 1), st.just(R.wbc_min)),
    "platelets": st.one_of(decimals(0, 150, 0), st.just(R.plt_min)),
}


@st.composite
def counts(
    draw: st.DrawFn,
    first: dt.date = FIRST,
    last: dt.date = LAST,
    *,
    prefix: str = "c",
    max_size: int = 8,
    censored: bool = True,
) -> list[Fact]:
    """WBC and platelet results around day 0, with unique references.

    Mostly full blood counts (both results at one instant, as a CBC panel
    reports them), sometimes a single result.
    """
    out = []
    for index in range(draw(st.integers(0, max_size))):
        at = draw(moments(first, last))
        panel = draw(st.sampled_from([("wbc", "platelets"), ("wbc", "platelets"), ("wbc",), ("platelets",)]))
        for concept in panel:
            out.append(
                fact(
                    concept,
                    at,
                    draw(VALUES[concept]),
                    comparator=draw(comparators(censored_share=6)) if censored else None,
                    ref=f"Observation/{prefix}{index}-{concept}",
                )
            )
    return out


def derive(
    facts: Sequence[Fact], rules: ProtocolRules = RULES, day0: dt.date = DAY0
) -> Reconstitution | None:
    return reconstitution.derive_reconstitution(facts, SUBJECT, rules.reconstitution, day0)


def apart(rules: ProtocolRules, days: int) -> ProtocolRules:
    return tuned(rules, "reconstitution", max_days_apart=days)


def brute_force_date(facts: Sequence[Fact], rules: ProtocolRules, day0: dt.date) -> dt.date | None:
    """Every (WBC, platelet) pair of plain values tried: the earliest later-of-the-pair date."""
    limits = {"wbc": rules.reconstitution.wbc_min, "platelets": rules.reconstitution.plt_min}

    def qualifying(concept: str) -> list[dt.date]:
        return [
            f.local_date
            for f in facts
            if f.concept == concept
            and f.local_date > day0
            and f.value is not None
            and f.value >= limits[concept]
        ]

    dates = [
        max(w, p)
        for w in qualifying("wbc")
        for p in qualifying("platelets")
        if abs((w - p).days) <= rules.reconstitution.max_days_apart
    ]
    return min(dates, default=None)


@ORACLE_BUDGET
@given(counts(censored=False), st.integers(0, 3))
def test_the_date_is_the_earliest_qualifying_pair(facts: list[Fact], days_apart: int) -> None:
    """Soundness, minimality and completeness at once, against a search over all pairs."""
    rules = apart(RULES, days_apart)
    record = derive(facts, rules)
    assert (None if record is None else record.date) == brute_force_date(facts, rules, DAY0)


@TIMELINE_BUDGET
@given(counts(), st.integers(0, 3))
def test_the_record_is_after_day0_and_its_results_qualify(facts: list[Fact], days_apart: int) -> None:
    rules = apart(RULES, days_apart)
    record = derive(facts, rules)
    if record is None:
        return
    assert record.date > DAY0
    assert record.day_from_transplant == (record.date - DAY0).days >= 1
    by_ref = {f.source_ref: f for f in facts}
    wbc, plt = (by_ref[ref] for ref in record.evidence)
    assert (wbc.concept, plt.concept) == ("wbc", "platelets")
    assert (record.wbc, record.plt) == (wbc.value, plt.value)
    assert record.wbc >= R.wbc_min and record.plt >= R.plt_min
    assert wbc.comparator in (None, ">", ">=")  # a censored result counts only when it must qualify
    assert plt.comparator in (None, ">", ">=")
    assert abs((wbc.local_date - plt.local_date).days) <= days_apart
    assert max(wbc.local_date, plt.local_date) == record.date
    if days_apart == 0:
        assert wbc.local_date == plt.local_date == record.date


@TIMELINE_BUDGET
@given(counts(), st.integers(0, 3), st.data())
def test_a_result_measured_after_the_deciding_ones_never_changes_the_record(
    facts: list[Fact], days_apart: int, data: st.DataObject
) -> None:
    """Including a higher or lower count later on the reconstitution day itself."""
    rules = apart(RULES, days_apart)
    record = derive(facts, rules)
    if record is None:
        return
    by_ref = {f.source_ref: f for f in facts}
    decided_at = max(by_ref[ref].effective_start for ref in record.evidence)
    later = data.draw(counts(record.date, record.date + dt.timedelta(days=2), prefix="late"))
    after = [f for f in later if f.effective_start > decided_at]
    assert derive(facts + after, rules) == record


@TIMELINE_BUDGET
@given(counts(), counts(prefix="more", max_size=4), st.integers(0, 3))
def test_more_results_never_delay_reconstitution(
    facts: list[Fact], more: list[Fact], days_apart: int
) -> None:
    rules = apart(RULES, days_apart)
    record = derive(facts, rules)
    if record is None:
        return
    again = derive(facts + more, rules)
    assert again is not None
    assert again.date <= record.date


@TIMELINE_BUDGET
@given(counts(), counts(prefix="low"), st.integers(0, 3))
def test_results_below_the_thresholds_never_matter(
    facts: list[Fact], low: list[Fact], days_apart: int
) -> None:
    """A second, lower count (the same day or any other) does not undo a reached threshold."""
    rules = apart(RULES, days_apart)
    below = [
        f.model_copy(update={"comparator": None})
        for f in low
        if f.value is not None and f.value < (R.wbc_min if f.concept == "wbc" else R.plt_min)
    ]
    assert derive(facts + below, rules) == derive(facts, rules)


@TIMELINE_BUDGET
@given(counts(), counts(FIRST - dt.timedelta(days=30), DAY0, prefix="early"))
def test_results_up_to_day0_never_matter(facts: list[Fact], early: list[Fact]) -> None:
    """Counts on day 0 itself or before are not reconstitution (recovery comes after the graft)."""
    assert derive(facts + early) == derive(facts)


@TIMELINE_BUDGET
@given(st.data())
def test_order_duplicates_and_written_offset_do_not_matter(data: st.DataObject) -> None:
    facts = data.draw(counts())
    expected = derive(facts)
    again = data.draw(st.permutations(facts))
    if facts:
        again += data.draw(st.lists(st.sampled_from(facts), max_size=4))
    assert derive(again) == expected
    assert derive(rewritten(facts, data.draw(st.sampled_from(OFFSETS)))) == expected


@TIMELINE_BUDGET
@given(
    counts(),
    st.tuples(decimals(0, 6, 1), decimals(0, 6, 1)),
    st.tuples(decimals(0, 120, 0), decimals(0, 120, 0)),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.dates(FIRST, LAST), st.dates(FIRST, LAST)),
)
def test_stricter_rules_never_bring_the_date_earlier(
    facts: list[Fact],
    wbc_mins: tuple[float, float],
    plt_mins: tuple[float, float],
    days: tuple[int, int],
    day0s: tuple[dt.date, dt.date],
) -> None:
    """Higher thresholds, fewer days apart and a later day 0 each ask for more."""
    lenient = tuned(
        RULES, "reconstitution", wbc_min=min(wbc_mins), plt_min=min(plt_mins), max_days_apart=max(days)
    )
    strict = tuned(
        RULES, "reconstitution", wbc_min=max(wbc_mins), plt_min=max(plt_mins), max_days_apart=min(days)
    )
    easy = derive(facts, lenient, min(day0s))
    hard = derive(facts, strict, max(day0s))
    if hard is not None:
        assert easy is not None
        assert easy.date <= hard.date
