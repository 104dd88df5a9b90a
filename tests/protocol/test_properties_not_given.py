"""A dose not given is never exposure: adding one changes no derived date, day or record (issue 17)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from adapter.mapping.facts import NOT_DONE, Fact
from adapter.protocol import cycles, derive
from adapter.protocol.rules import ProtocolRules, load_rules

from .conftest import MAPPING_DIR, SUBJECT, fact
from .strategies import BUDGET, TIMELINE_BUDGET
from .test_derive import timeline
from .test_properties import BASE, OFFSETS, administrations

RULES: ProtocolRules = load_rules(MAPPING_DIR)  # hypothesis does not mix with function fixtures


@st.composite
def doses_not_given(draw: st.DrawFn, first: dt.datetime, days: int, max_size: int = 4) -> list[Fact]:
    """Blinatumomab administrations recorded as not done: anywhere, before, inside or between cycles."""
    out = []
    for index in range(draw(st.integers(min_value=1, max_value=max_size))):
        start = first + dt.timedelta(minutes=draw(st.integers(-30 * 24 * 60, days * 24 * 60)))
        start = start.astimezone(draw(st.sampled_from(OFFSETS)))
        minutes = draw(st.one_of(st.none(), st.integers(10, 5 * 24 * 60)))
        end = None if minutes is None else start + dt.timedelta(minutes=minutes)
        ref = f"MedicationAdministration/not-given-{index}"
        out.append(fact("blinatumomab", start, None, end=end, ref=ref, status=NOT_DONE))
    return out


def _shape(result: tuple[cycles.Cycle, ...]) -> list[tuple[object, ...]]:
    return [(c.start, c.end, c.infused, c.interrupted, c.total_dose_mcg, c.administrations) for c in result]


@BUDGET
@given(administrations(), doses_not_given(BASE, 120))
def test_a_dose_not_given_never_changes_a_cycle(given_doses: list[Fact], not_given: list[Fact]) -> None:
    before = cycles.group_cycles(given_doses, RULES.cycles)
    after = cycles.group_cycles(given_doses + not_given, RULES.cycles)
    assert _shape(after) == _shape(before)


@TIMELINE_BUDGET
@given(doses_not_given(dt.datetime(2025, 2, 1, tzinfo=dt.UTC), 220, max_size=6))
def test_a_dose_not_given_changes_no_record_of_a_whole_timeline(not_given: list[Fact]) -> None:
    """Cycles, phases, day offsets, the collection's timing and the first-infusion anchor all stay."""
    facts = timeline()
    for anchor_rules in (RULES, _anchored_at_first_infusion(RULES)):
        before = derive.derive_subject(facts, SUBJECT, anchor_rules)
        after = derive.derive_subject(facts + not_given, SUBJECT, anchor_rules)
        assert after == before


def test_only_doses_not_given_make_no_cycle_at_all() -> None:
    not_given = [
        fact("blinatumomab", "2025-03-01T08:00+08:00", None, end="2025-03-03T08:00+08:00", status=NOT_DONE)
    ]
    assert cycles.group_cycles(not_given, RULES.cycles) == ()
    records = derive.derive_subject(not_given, SUBJECT, _anchored_at_first_infusion(RULES)).records
    assert [r.record_type.value for r in records] == ["EligibilityAssessment"]
    assert records[0].anchor_date is None  # type: ignore[union-attr]  # no infusion, no anchor


def _anchored_at_first_infusion(rules: ProtocolRules) -> ProtocolRules:
    screening = rules.eligibility.screening.model_copy(update={"anchor": "first_infusion"})
    eligibility = rules.eligibility.model_copy(update={"screening": screening})
    return rules.model_copy(update={"eligibility": eligibility})
