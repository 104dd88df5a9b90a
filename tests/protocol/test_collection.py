"""Stem-cell collection: apheresis dates and the window after the pre-transplant cycle."""

from __future__ import annotations

import datetime as dt

import pytest

from adapter.protocol import collection, cycles
from adapter.protocol.rules import ProtocolRules

from .conftest import SUBJECT, d, daily_bags, fact, tuned

# Pre-transplant cycle: 28 daily bags from 1 March, the last ending on 29 March (local).
CYCLE = daily_bags(d("2025-03-01"), 28)
CYCLE_END = d("2025-03-29")


def collect(facts, rules: ProtocolRules, day0: dt.date | None = None):
    cycle_records = cycles.cycle_records(
        cycles.group_cycles(facts, rules.cycles), SUBJECT, rules.cycles, day0, None
    )
    return collection.derive_collection(facts, SUBJECT, rules.collection, cycle_records, day0)


def apheresis(day: str, status: str = "completed"):
    return fact("apheresis", f"{day}T09:00+08:00", status=status)


@pytest.mark.parametrize(
    ("first", "days_after", "flagged"),
    [
        ("2025-03-31", 2, True),
        ("2025-04-01", 3, False),  # window start
        ("2025-04-05", 7, False),  # "1 week after blinatumomab"
        ("2025-04-12", 14, False),  # window end
        ("2025-04-13", 15, True),
    ],
)
def test_window_after_pre_transplant_cycle(
    rules: ProtocolRules, first: str, days_after: int, flagged: bool
) -> None:
    record = collect([*CYCLE, apheresis(first)], rules, day0=d("2025-05-01"))
    assert record is not None
    assert (record.first_date, record.days_after_pre_transplant_cycle) == (d(first), days_after)
    assert ("collection_outside_window" in record.flags) is flagged
    assert record.day_from_transplant == (d(first) - d("2025-05-01")).days


def test_several_aphereses_and_unphased_cycle(rules: ProtocolRules) -> None:
    facts = [apheresis("2025-04-06"), *CYCLE, apheresis("2025-04-05"), apheresis("2025-04-05")]
    record = collect(facts, rules)  # no day 0 yet: the cycle is unphased but precedes the collection
    assert record is not None
    assert record.dates == (d("2025-04-05"), d("2025-04-06"))
    assert record.days_after_pre_transplant_cycle == 7
    assert record.flags == ()
    assert record.day_from_transplant is None


def test_in_progress_counts_other_statuses_do_not(rules: ProtocolRules) -> None:
    record = collect([*CYCLE, apheresis("2025-04-05", status="in-progress")], rules)
    assert record is not None and record.first_date == d("2025-04-05")
    assert collect([*CYCLE, apheresis("2025-04-05", status="on-hold")], rules) is None


def test_no_apheresis_no_record(rules: ProtocolRules) -> None:
    assert collect(CYCLE, rules) is None


def test_without_a_preceding_cycle(rules: ProtocolRules) -> None:
    record = collect([apheresis("2025-04-05")], rules)
    assert record is not None
    assert (record.days_after_pre_transplant_cycle, record.flags) == (None, ("no_pre_transplant_cycle",))


def test_measured_from_the_last_cycle_before_the_collection(rules: ProtocolRules) -> None:
    earlier = daily_bags(d("2025-01-01"), 28)
    record = collect([*earlier, *CYCLE, apheresis("2025-04-05")], rules, day0=d("2025-05-01"))
    assert record is not None and record.days_after_pre_transplant_cycle == 7


def test_configurable_window(rules: ProtocolRules) -> None:
    narrow = tuned(rules, "collection", window_min_days=5, window_max_days=9)
    record = collect([*CYCLE, apheresis("2025-04-01")], narrow)
    assert record is not None and record.flags == ("collection_outside_window",)
