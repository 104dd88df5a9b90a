"""Blinatumomab cycles: grouping by gap, infused days, phases, numbering and flags."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

from adapter.mapping.facts import Fact
from adapter.protocol import cycles
from adapter.protocol.records import CyclePhase, TreatmentCycle
from adapter.protocol.rules import ProtocolRules

from .conftest import SUBJECT, bag, d, daily_bags, tuned


def derive(
    facts: Sequence[Fact], rules: ProtocolRules, day0: dt.date | None = None, recon: dt.date | None = None
) -> tuple[TreatmentCycle, ...]:
    grouped = cycles.group_cycles(facts, rules.cycles)
    return cycles.cycle_records(grouped, SUBJECT, rules.cycles, day0, recon)


GAP_CASES = [
    # second bag start (first bag: 2025-03-01 08:00 to 2025-03-05 08:00 +08:00), cycles
    ("2025-03-12T08:00+08:00", 1),  # gap exactly 7 days: same cycle
    ("2025-03-12T00:00Z", 1),  # same instant, written in UTC
    ("2025-03-12T09:00+08:00", 2),  # 7 days + 1 hour: new cycle
    ("2025-03-12T08:00:01+08:00", 2),  # 7 days + 1 second
    ("2025-03-06T08:00+08:00", 1),
]


@pytest.mark.parametrize(("second_start", "n_cycles"), GAP_CASES)
def test_gap_longer_than_seven_days_starts_a_cycle(
    rules: ProtocolRules, second_start: str, n_cycles: int
) -> None:
    first = bag("2025-03-01T08:00+08:00", "2025-03-05T08:00+08:00")
    second = bag(second_start, None)
    result = derive([first, second], rules)
    assert len(result) == n_cycles
    assert result[0].start == d("2025-03-01")


def test_gap_from_a_point_administration_counts_from_its_day_of_infusion(rules: ProtocolRules) -> None:
    """A point administration stands for 24 h from its charted time."""
    point = bag("2025-03-01T08:00+08:00", None)
    assert len(derive([point, bag("2025-03-09T08:00+08:00", None)], rules)) == 1  # 7 days after its 24 h
    assert len(derive([point, bag("2025-03-09T08:01+08:00", None)], rules)) == 2


def test_gap_is_measured_from_the_running_end_not_the_last_start(rules: ProtocolRules) -> None:
    long_bag = bag("2025-03-01T08:00+08:00", "2025-03-08T08:00+08:00")
    short_inside = bag("2025-03-02T08:00+08:00", "2025-03-02T20:00+08:00")
    later = bag("2025-03-14T08:00+08:00", None)  # 6 days after the long bag, 11.5 after the short one
    assert len(derive([long_bag, short_inside, later], rules)) == 1


def test_continuous_28_day_cycle(rules: ProtocolRules) -> None:
    (cycle,) = derive(daily_bags(d("2025-03-01"), 28), rules)
    assert (cycle.phase, cycle.number, cycle.start, cycle.end) == (
        CyclePhase.UNPHASED,
        1,
        d("2025-03-01"),
        d("2025-03-29"),
    )
    assert (cycle.infused_days, cycle.calendar_days, cycle.administrations) == (28.0, 29, 28)
    assert cycle.total_dose_mcg == 28 * 28.0
    assert cycle.flags == ()
    assert len(cycle.evidence) == 28 and list(cycle.evidence) == sorted(cycle.evidence)


INFUSED_CASES = [
    # administrations (start, end), infused days, calendar days
    (
        [
            ("2025-03-01T08:00+08:00", "2025-03-03T08:00+08:00"),
            ("2025-03-02T08:00+08:00", "2025-03-04T08:00+08:00"),
        ],
        3.0,
        4,
    ),
    ([("2025-03-01T08:00+08:00", "2025-03-01T16:00+08:00")], 0.33, 1),
    (
        [
            ("2025-03-01T08:00+08:00", None),
            ("2025-03-02T08:00+08:00", None),
            ("2025-03-03T08:00+08:00", None),
        ],
        3.0,
        3,
    ),
    ([("2025-03-01T08:00+08:00", None), ("2025-03-01T08:00+08:00", None)], 1.0, 1),  # charted twice
    # a point late in a day reaches into the next; capped at the cycle's calendar days
    ([("2025-03-01T00:00+08:00", "2025-03-01T12:00+08:00"), ("2025-03-01T20:00+08:00", None)], 1.0, 1),
    (
        [
            ("2025-03-01T08:00+08:00", "2025-03-02T08:00+08:00"),
            ("2025-03-03T08:00+08:00", "2025-03-04T08:00+08:00"),
        ],
        2.0,
        4,
    ),
    ([("2025-03-01T23:30+08:00", "2025-03-02T00:30+08:00")], 0.04, 2),  # one hour across local midnight
]


@pytest.mark.parametrize(("spans", "infused", "calendar"), INFUSED_CASES)
def test_infused_days_are_the_union_of_intervals(
    rules: ProtocolRules, spans: list[tuple[str, str | None]], infused: float, calendar: int
) -> None:
    facts = [bag(start, end, ref=f"MedicationAdministration/{n}") for n, (start, end) in enumerate(spans)]
    (cycle,) = derive(facts, rules)
    assert (cycle.infused_days, cycle.calendar_days, cycle.administrations) == (infused, calendar, len(spans))


def test_local_dates_not_utc(rules: ProtocolRules) -> None:
    (late,) = derive([bag("2025-03-01T23:30+08:00", "2025-03-02T23:30+08:00")], rules)
    assert (late.start, late.end) == (d("2025-03-01"), d("2025-03-02"))
    (utc,) = derive([bag("2025-03-01T16:30Z", None)], rules)  # 00:30 on 2 March at the site
    assert (utc.start, utc.end) == (d("2025-03-02"), d("2025-03-02"))


def test_input_order_does_not_matter(rules: ProtocolRules) -> None:
    facts = daily_bags(d("2025-03-01"), 10) + daily_bags(d("2025-04-01"), 5)
    assert derive(facts, rules) == derive(list(reversed(facts)), rules)


INTERRUPTION_CASES = [
    # second bag start after a bag ending 2025-03-02 08:00, interrupted?
    ("2025-03-03T08:00+08:00", False),  # a gap of exactly 1 day
    ("2025-03-03T08:01+08:00", True),
    ("2025-03-02T08:30+08:00", False),  # a bag change
]


@pytest.mark.parametrize(("second_start", "interrupted"), INTERRUPTION_CASES)
def test_interruption_flag(rules: ProtocolRules, second_start: str, interrupted: bool) -> None:
    facts = [bag("2025-03-01T08:00+08:00", "2025-03-02T08:00+08:00"), bag(second_start, None)]
    (cycle,) = derive(facts, rules)
    assert ("interrupted" in cycle.flags) is interrupted


@pytest.mark.parametrize(("days", "flagged"), [(28, False), (29, True)])
def test_over_28_infused_days(rules: ProtocolRules, days: int, flagged: bool) -> None:
    (cycle,) = derive(daily_bags(d("2025-03-01"), days), rules)
    assert ("over_28_infused_days" in cycle.flags) is flagged


def test_dose_incomplete(rules: ProtocolRules) -> None:
    facts = daily_bags(d("2025-03-01"), 3)
    (complete,) = derive(facts, rules)
    assert complete.total_dose_mcg == 84.0
    (partial,) = derive([*facts, bag("2025-03-04T08:00+08:00", None, dose=None)], rules)
    assert (partial.total_dose_mcg, partial.flags) == (None, ("dose_incomplete",))


def test_dose_sum_is_exact_whatever_the_order(rules: ProtocolRules) -> None:
    doses = [9.1, 0.1, 0.2, 27.9, 13.3]
    facts = [
        bag(f"2025-03-0{n + 1}T08:00+08:00", f"2025-03-0{n + 2}T08:00+08:00", dose=dose)
        for n, dose in enumerate(doses)
    ]
    totals = {derive(order, rules)[0].total_dose_mcg for order in (facts, facts[::-1], facts[2:] + facts[:2])}
    assert totals == {50.6}


def _monthly(first: str, n: int) -> list[Fact]:
    """n 28-day cycles, a new one every 6 weeks."""
    start = d(first)
    return [f for k in range(n) for f in daily_bags(start + dt.timedelta(weeks=6 * k), 28)]


def test_phases_numbering_and_maintenance_flags(rules: ProtocolRules) -> None:
    pre = daily_bags(d("2025-01-01"), 28)
    maintenance = _monthly("2025-06-01", 5)
    day0, recon = d("2025-04-01"), d("2025-06-01")
    result = derive([*maintenance, *pre], rules, day0=day0, recon=recon)
    assert [(c.phase, c.number) for c in result] == [
        (CyclePhase.PRE_TRANSPLANT, 1),
        *[(CyclePhase.MAINTENANCE, n) for n in range(1, 6)],
    ]
    assert result[0].day_from_transplant == (d("2025-01-01") - day0).days
    assert result[1].day_from_transplant == (d("2025-06-01") - day0).days
    assert [c.flags for c in result] == [(), (), (), (), (), ("fifth_maintenance_cycle",)]


@pytest.mark.parametrize(
    ("recon", "flagged"),
    [(None, True), (d("2025-06-02"), True), (d("2025-06-01"), False), (d("2025-05-20"), False)],
)
def test_maintenance_before_reconstitution(
    rules: ProtocolRules, recon: dt.date | None, flagged: bool
) -> None:
    (cycle,) = derive(daily_bags(d("2025-06-01"), 28), rules, day0=d("2025-04-01"), recon=recon)
    assert cycle.phase is CyclePhase.MAINTENANCE
    assert ("maintenance_before_reconstitution" in cycle.flags) is flagged


def test_cycle_starting_on_day0_is_maintenance_and_one_spanning_it_is_flagged(rules: ProtocolRules) -> None:
    (on_day0,) = derive(daily_bags(d("2025-04-01"), 3), rules, day0=d("2025-04-01"))
    assert on_day0.phase is CyclePhase.MAINTENANCE
    (spanning,) = derive(daily_bags(d("2025-03-25"), 10), rules, day0=d("2025-04-01"))
    assert spanning.phase is CyclePhase.PRE_TRANSPLANT
    assert "spans_transplant" in spanning.flags


def test_unphased_without_day0_and_record_ids(rules: ProtocolRules) -> None:
    result = derive(_monthly("2025-01-01", 3), rules)
    assert [(c.phase, c.number) for c in result] == [(CyclePhase.UNPHASED, n) for n in (1, 2, 3)]
    assert len({c.record_id for c in result}) == 3
    assert all(c.day_from_transplant is None for c in result)


def test_configurable_gap(rules: ProtocolRules) -> None:
    facts = [bag("2025-03-01T08:00+08:00", "2025-03-02T08:00+08:00"), bag("2025-03-05T08:00+08:00", None)]
    assert len(derive(facts, rules)) == 1
    assert len(derive(facts, tuned(rules, "cycles", gap_days=2))) == 2


def test_no_administrations_no_cycles(rules: ProtocolRules) -> None:
    assert derive([], rules) == ()
