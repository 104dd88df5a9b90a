"""Properties of the stem-cell collection over generated aphereses and cycles (hypothesis).

The rule (collection.py, protocol.toml, docs/design.md §4): an apheresis
counts when its Procedure is ``completed`` or ``in-progress``; the record
lists the distinct site-local dates of those; the first of them is measured
from the end of the preceding cycle, the last non-maintenance cycle that
started on or before it, and flagged ``collection_outside_window`` outside
[window_min_days, window_max_days]; without such a cycle it is flagged
``no_pre_transplant_cycle``.  The record carries no totals (no CD34 dose is
derived), so the "never lowers" properties are about its dates: another
apheresis never removes a date and never makes the first one later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from adapter.mapping.facts import Fact
from adapter.protocol import collection, cycles
from adapter.protocol.records import CyclePhase, StemCellCollection, TreatmentCycle
from adapter.protocol.rules import ProtocolRules

from .conftest import SUBJECT, daily_bags, fact, tuned
from .strategies import (
    OFFSETS,
    PROCEDURE_STATUSES,
    RULES,
    TIMELINE_BUDGET,
    moments,
    procedures,
    renamed,
    rewritten,
)

FIRST, LAST = dt.date(2025, 3, 1), dt.date(2025, 4, 30)
NOT_PERFORMED = tuple(s for s in PROCEDURE_STATUSES if s not in collection.PERFORMED)
OUTSIDE = "collection_outside_window"
NO_CYCLE = "no_pre_transplant_cycle"


# Mostly performed, so that most examples derive a record.
STATUSES = ("completed", "completed", "in-progress", *PROCEDURE_STATUSES)


def aphereses(
    statuses: Sequence[str] = STATUSES, prefix: str = "aph", max_size: int = 4
) -> st.SearchStrategy[list[Fact]]:
    return procedures("apheresis", FIRST, LAST, prefix=prefix, max_size=max_size, statuses=statuses)


@st.composite
def regimens(draw: st.DrawFn) -> list[Fact]:
    """Blinatumomab as up to three blocks of daily bags, one after another with 0-20 days between.

    Blocks apart by more than the cycle gap are separate cycles, as a site charts them.
    """
    out: list[Fact] = []
    start = draw(st.dates(FIRST - dt.timedelta(days=40), FIRST))
    for _ in range(draw(st.integers(0, 3))):
        days = draw(st.integers(1, 21))
        out += daily_bags(start, days)
        start += dt.timedelta(days=days + draw(st.integers(0, 20)))
    return out


DAY0S = st.one_of(st.none(), st.dates(FIRST - dt.timedelta(days=30), LAST + dt.timedelta(days=30)))


def cycle_records(administrations: Sequence[Fact], day0: dt.date | None) -> tuple[TreatmentCycle, ...]:
    return cycles.cycle_records(
        cycles.group_cycles(administrations, RULES.cycles), SUBJECT, RULES.cycles, day0, None
    )


def derive(
    facts: Sequence[Fact],
    cycle_list: Sequence[TreatmentCycle],
    day0: dt.date | None,
    rules: ProtocolRules = RULES,
) -> StemCellCollection | None:
    return collection.derive_collection(facts, SUBJECT, rules.collection, cycle_list, day0)


def preceding_cycle(cycle_list: Sequence[TreatmentCycle], first: dt.date) -> TreatmentCycle | None:
    """The last non-maintenance cycle started on or before ``first``, as the docstring states it."""
    candidates = [c for c in cycle_list if c.phase is not CyclePhase.MAINTENANCE and c.start <= first]
    return max(candidates, key=lambda c: c.start, default=None)


@TIMELINE_BUDGET
@given(aphereses(), regimens(), DAY0S)
def test_the_record_lists_the_performed_dates_and_measures_the_first(
    facts: list[Fact], bags: list[Fact], day0: dt.date | None
) -> None:
    cycle_list = cycle_records(bags, day0)
    record = derive(facts, cycle_list, day0)
    performed = [f for f in facts if f.status in ("completed", "in-progress")]
    if not performed:
        assert record is None
        return
    assert record is not None
    assert record.dates == tuple(sorted({f.local_date for f in performed}))
    assert record.first_date == record.dates[0]
    assert record.evidence == tuple(sorted(f.source_ref for f in performed))
    assert record.day_from_transplant == (None if day0 is None else (record.first_date - day0).days)
    cycle = preceding_cycle(cycle_list, record.first_date)
    if cycle is None:
        assert (record.days_after_pre_transplant_cycle, record.flags) == (None, (NO_CYCLE,))
    else:
        days_after = (record.first_date - cycle.end).days
        assert record.days_after_pre_transplant_cycle == days_after
        window = RULES.collection.window_min_days <= days_after <= RULES.collection.window_max_days
        assert record.flags == (() if window else (OUTSIDE,))


@TIMELINE_BUDGET
@given(aphereses(), aphereses(NOT_PERFORMED, prefix="not"), regimens(), DAY0S)
def test_aphereses_not_performed_never_count(
    facts: list[Fact], others: list[Fact], bags: list[Fact], day0: dt.date | None
) -> None:
    """Not done, stopped, on hold, entered in error...: none of them is a collection."""
    cycle_list = cycle_records(bags, day0)
    assert derive(facts + others, cycle_list, day0) == derive(facts, cycle_list, day0)


@TIMELINE_BUDGET
@given(st.data())
def test_order_duplicates_and_written_offset_do_not_matter(data: st.DataObject) -> None:
    facts, bags, day0 = data.draw(aphereses()), data.draw(regimens()), data.draw(DAY0S)
    cycle_list = cycle_records(bags, day0)
    expected = derive(facts, cycle_list, day0)
    again = data.draw(st.permutations(facts))
    if facts:
        again += data.draw(st.lists(st.sampled_from(facts), max_size=3))
    assert derive(again, data.draw(st.permutations(cycle_list)), day0) == expected
    assert derive(rewritten(facts, data.draw(st.sampled_from(OFFSETS))), cycle_list, day0) == expected
    # The cycles themselves do not depend on the order the bags arrived in.
    assert cycle_records(data.draw(st.permutations(bags)), day0) == cycle_list


@TIMELINE_BUDGET
@given(aphereses(), regimens(), DAY0S, moments(FIRST, LAST), st.sampled_from(sorted(collection.PERFORMED)))
def test_another_apheresis_never_removes_a_date_nor_delays_the_first(
    facts: list[Fact], bags: list[Fact], day0: dt.date | None, at: dt.datetime, status: str
) -> None:
    cycle_list = cycle_records(bags, day0)
    before = derive(facts, cycle_list, day0)
    extra = fact("apheresis", at, status=status, ref="Procedure/extra")
    after = derive([*facts, extra], cycle_list, day0)
    assert after is not None
    assert extra.local_date in after.dates
    if before is None:
        return
    assert set(before.dates) <= set(after.dates)
    assert after.first_date <= before.first_date
    if extra.local_date >= before.first_date:  # a later apheresis does not move the measurement
        assert (after.days_after_pre_transplant_cycle, after.flags) == (
            before.days_after_pre_transplant_cycle,
            before.flags,
        )


@TIMELINE_BUDGET
@given(aphereses(), regimens(), DAY0S)
def test_maintenance_cycles_and_cycles_after_the_first_apheresis_never_matter(
    facts: list[Fact], bags: list[Fact], day0: dt.date | None
) -> None:
    cycle_list = cycle_records(bags, day0)
    record = derive(facts, cycle_list, day0)
    if record is None:
        return
    kept = [c for c in cycle_list if c.phase is not CyclePhase.MAINTENANCE and c.start <= record.first_date]
    assert derive(facts, kept, day0) == record


@TIMELINE_BUDGET
@given(aphereses(), regimens(), DAY0S, st.integers(-5, 20), st.integers(-5, 20), st.integers(0, 10))
def test_a_wider_window_never_adds_the_outside_flag(
    facts: list[Fact], bags: list[Fact], day0: dt.date | None, low: int, high: int, widen: int
) -> None:
    low, high = sorted((low, high))
    narrow = tuned(RULES, "collection", window_min_days=low, window_max_days=high)
    wide = tuned(RULES, "collection", window_min_days=low - widen, window_max_days=high + widen)
    cycle_list = cycle_records(bags, day0)
    in_narrow = derive(facts, cycle_list, day0, narrow)
    in_wide = derive(facts, cycle_list, day0, wide)
    if in_narrow is not None and in_wide is not None and OUTSIDE in in_wide.flags:
        assert OUTSIDE in in_narrow.flags


@TIMELINE_BUDGET
@given(aphereses(max_size=3), regimens(), DAY0S)
def test_renamed_copies_of_the_same_aphereses_give_the_same_dates(
    facts: list[Fact], bags: list[Fact], day0: dt.date | None
) -> None:
    """The same procedure charted twice (two resources) is still one collection day."""
    cycle_list = cycle_records(bags, day0)
    record = derive(facts, cycle_list, day0)
    twice = derive(facts + renamed(facts, "copy"), cycle_list, day0)
    if record is None:
        assert twice is None
        return
    assert twice is not None
    assert (twice.dates, twice.days_after_pre_transplant_cycle, twice.flags) == (
        record.dates,
        record.days_after_pre_transplant_cycle,
        record.flags,
    )
