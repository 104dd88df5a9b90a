"""Properties of the derivations over generated timelines (hypothesis)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.mapping.facts import Fact
from adapter.protocol import cycles, derive
from adapter.protocol.rules import ProtocolRules, load_rules

from .conftest import MAPPING_DIR, SUBJECT, bag, d, fact

RULES: ProtocolRules = load_rules(MAPPING_DIR)  # hypothesis does not mix with function fixtures
BASE = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
OFFSETS = [dt.timezone(dt.timedelta(hours=h)) for h in (8, 0, -5)]  # how the source wrote the time


@st.composite
def administrations(draw: st.DrawFn, max_size: int = 12) -> list[Fact]:
    """Blinatumomab bags and point administrations over ~4 months, unique refs."""
    n = draw(st.integers(min_value=0, max_value=max_size))
    out = []
    for index in range(n):
        start = BASE + dt.timedelta(minutes=draw(st.integers(0, 120 * 24 * 60)))
        start = start.astimezone(draw(st.sampled_from(OFFSETS)))
        minutes = draw(st.one_of(st.none(), st.integers(10, 5 * 24 * 60)))
        end = None if minutes is None else start + dt.timedelta(minutes=minutes)
        dose = draw(st.one_of(st.none(), st.sampled_from([9.0, 28.0, 0.1, 13.3])))
        out.append(fact("blinatumomab", start, dose, end=end, ref=f"MedicationAdministration/{index}"))
    return out


def _spans(result: tuple[cycles.Cycle, ...]) -> list[tuple[dt.date, dt.date]]:
    return [(c.start, c.end) for c in result]


@given(st.data())
def test_cycle_grouping_is_order_independent(data: st.DataObject) -> None:
    facts = data.draw(administrations())
    shuffled = data.draw(st.permutations(facts))
    assert cycles.group_cycles(shuffled, RULES.cycles) == cycles.group_cycles(facts, RULES.cycles)


@given(administrations(), administrations(max_size=1))
def test_adding_an_administration_never_loses_treatment(facts: list[Fact], extra: list[Fact]) -> None:
    """Infused days never drop, and every earlier cycle lies inside a cycle afterwards.

    A cycle start can disappear only by merging: an administration in the gap
    between two cycles joins them (a consequence of the gap rule), so the
    property is containment, not "the same starts".
    """
    added = [f.model_copy(update={"source_ref": "MedicationAdministration/extra"}) for f in extra]
    before = cycles.group_cycles(facts, RULES.cycles)
    after = cycles.group_cycles(facts + added, RULES.cycles)
    assert sum((c.infused for c in after), dt.timedelta()) >= sum((c.infused for c in before), dt.timedelta())
    for start, end in _spans(before):
        assert any(s <= start and end <= e for s, e in _spans(after))


@given(administrations(), administrations(max_size=1))
def test_administration_inside_a_cycle_keeps_the_cycle_starts(facts: list[Fact], extra: list[Fact]) -> None:
    before = cycles.group_cycles(facts, RULES.cycles)
    inside = [
        f
        for f in extra
        for c in before
        if min(cycles.infusion_interval(a)[0] for a in c.administrations) <= f.effective_start
        and cycles.infusion_interval(f)[1] <= max(cycles.infusion_interval(a)[1] for a in c.administrations)
    ]
    after = cycles.group_cycles(facts + inside, RULES.cycles)
    assert [c.start for c in after] == [c.start for c in before]


def test_an_administration_in_the_gap_merges_two_cycles() -> None:
    """The documented exception to "never removes a cycle start"."""
    first = bag("2025-03-01T08:00+08:00", "2025-03-02T08:00+08:00")
    second = bag("2025-03-16T08:00+08:00", "2025-03-17T08:00+08:00")  # 14 days after the first
    bridge = bag("2025-03-08T08:00+08:00", "2025-03-10T08:00+08:00")  # 6 days after, 6 days before
    assert len(cycles.group_cycles([first, second], RULES.cycles)) == 2
    (merged,) = cycles.group_cycles([first, second, bridge], RULES.cycles)
    assert (merged.start, merged.end, merged.infused_days) == (d("2025-03-01"), d("2025-03-17"), 4.0)


@given(administrations())
def test_infused_days_never_exceed_calendar_days(facts: list[Fact]) -> None:
    grouped = cycles.group_cycles(facts, RULES.cycles)
    for record in cycles.cycle_records(grouped, SUBJECT, RULES.cycles, None, None):
        assert 0 < record.infused_days <= record.calendar_days
        assert record.start <= record.end


@st.composite
def timelines(draw: st.DrawFn) -> list[Fact]:
    """A mixed timeline: administrations, counts, SpO2 with O2, procedures, MRD."""
    facts = draw(administrations())

    def moment() -> dt.datetime:
        start = BASE + dt.timedelta(minutes=draw(st.integers(-40 * 24 * 60, 150 * 24 * 60)))
        return start.astimezone(draw(st.sampled_from(OFFSETS)))

    for index in range(draw(st.integers(0, 12))):
        concept = draw(
            st.sampled_from(["wbc", "platelets", "spo2", "oxygen_flow", "lvef", "alt", "mrd_flow"])
        )
        value = draw(st.sampled_from([0.0, 2.0, 3.0, 21.0, 50.0, 91.0, 120.0]))
        facts.append(fact(concept, moment(), value, ref=f"Observation/{index}"))
    for index in range(draw(st.integers(0, 3))):
        concept = draw(st.sampled_from(["auto_hsct", "apheresis"]))
        status = draw(st.sampled_from(["completed", "in-progress"]))
        facts.append(fact(concept, moment(), status=status, ref=f"Procedure/{index}"))
    return facts


@settings(max_examples=60)
@given(st.data())
def test_derive_subject_is_deterministic_under_shuffling(data: st.DataObject) -> None:
    facts = data.draw(timelines())
    shuffled = data.draw(st.permutations(facts))
    first = derive.derive_subject(facts, SUBJECT, RULES)
    again = derive.derive_subject(shuffled, SUBJECT, RULES)
    assert [r.model_dump_json() for r in again.records] == [r.model_dump_json() for r in first.records]
    assert again.issues == first.issues
