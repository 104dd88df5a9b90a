"""The site's practice for an SpO2 reading without any oxygen record (docs/design.md §4).

``spo2_without_oxygen_record = "room_air"`` reads a reading with *no* flow or
FiO2 on it and none charted within the pairing time as taken on room air;
every other reading is judged as charted, and the default ("unknown") is the
rule as it always was.  Hand-written cases first, then properties over
generated timelines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.mapping.facts import Fact
from adapter.protocol import eligibility
from adapter.protocol.context import SubjectContext
from adapter.protocol.records import CriterionResult, CriterionStatus

from .conftest import SUBJECT, fact
from .strategies import RULES, TIMELINE_BUDGET
from .test_properties_eligibility import ANCHOR, OXYGEN, SPO2_ATTRIBUTES, VALUES, WINDOW_START, T, screening

MET, NOT_MET, UNKNOWN = CriterionStatus.MET, CriterionStatus.NOT_MET, CriterionStatus.UNKNOWN
ROOM_AIR_SITE = SUBJECT.model_copy(update={"spo2_without_oxygen_record": "room_air"})
PLAIN_RULE = "spo2 > 91 % on room air"
PRACTICE_RULE = PLAIN_RULE + " (site practice: no oxygen record = room air)"
AT = "2025-02-20T10:00+08:00"


def spo2(facts: Sequence[Fact], subject: SubjectContext = ROOM_AIR_SITE) -> CriterionResult:
    record = eligibility.assess_eligibility(facts, subject, RULES.eligibility, None)
    return {c.criterion: c for c in record.criteria}["spo2"]


def reading(value: float, at: str = AT, ref: str = "Observation/spo2", **attributes: str) -> Fact:
    return fact("spo2", at, value, attributes=attributes, ref=ref)


# ---------------------------------------------------------------- hand-written cases


@pytest.mark.parametrize(("value", "status"), [(95, MET), (91.1, MET), (91, NOT_MET), (88, NOT_MET)])
def test_room_air_practice_decides_a_reading_without_oxygen_record(
    value: float, status: CriterionStatus
) -> None:
    result = spo2([reading(value)])
    assert (result.status, result.reason, result.value) == (status, None, value)
    assert result.rule == PRACTICE_RULE
    assert result.evidence == ("Observation/spo2",)


def test_by_default_a_reading_without_oxygen_record_stays_unknown() -> None:
    result = spo2([reading(95)], SUBJECT)
    assert (result.status, result.reason, result.rule) == (UNKNOWN, eligibility.OXYGEN_UNKNOWN, PLAIN_RULE)
    assert SUBJECT.spo2_without_oxygen_record == "unknown"


@pytest.mark.parametrize(
    ("case", "facts", "reason"),
    [
        ("flow 0 but FiO2 40", [reading(95, oxygen_flow="0", fio2="40")], eligibility.OXYGEN_UNKNOWN),
        ("flow 3 but FiO2 21", [reading(95, oxygen_flow="3", fio2="21")], eligibility.OXYGEN_UNKNOWN),
        ("unreadable component", [reading(95, oxygen_flow="n/a")], eligibility.OXYGEN_UNKNOWN),
        (
            "separate flow without a value",
            [reading(95), fact("oxygen_flow", "2025-02-20T10:05+08:00", None, ref="Observation/o2")],
            eligibility.OXYGEN_UNKNOWN,
        ),
        (
            "separate flow < 1 straddles the limit 0",
            [reading(95), fact("oxygen_flow", AT, 1, comparator="<", ref="Observation/o2")],
            eligibility.OXYGEN_UNKNOWN,
        ),
        ("flow 2 component", [reading(95, oxygen_flow="2")], eligibility.ON_OXYGEN),
        (
            "separate FiO2 40",
            [reading(95), fact("fio2", "2025-02-20T09:30+08:00", 40, ref="Observation/o2")],
            eligibility.ON_OXYGEN,
        ),
    ],
)
def test_a_reading_with_an_oxygen_record_is_judged_as_charted(
    case: str, facts: list[Fact], reason: str
) -> None:
    """Conflicting, unreadable or on-oxygen records are records: the practice does not apply."""
    result = spo2(facts)
    assert (result.status, result.reason, result.rule) == (UNKNOWN, reason, PLAIN_RULE)
    assert result == spo2(facts, SUBJECT)


def test_a_charted_room_air_reading_decides_without_the_practice_note() -> None:
    facts = [reading(90, oxygen_flow="0")]
    result = spo2(facts)
    assert (result.status, result.rule) == (NOT_MET, PLAIN_RULE)
    assert result == spo2(facts, SUBJECT)


def test_an_oxygen_result_outside_the_pairing_time_is_no_record() -> None:
    far = fact("oxygen_flow", "2025-02-20T11:01+08:00", 2, ref="Observation/o2")  # 61 minutes later
    result = spo2([reading(95), far])
    assert (result.status, result.rule, result.evidence) == (MET, PRACTICE_RULE, ("Observation/spo2",))


def test_the_latest_reading_counted_as_room_air_decides_and_says_how() -> None:
    charted = reading(95, at="2025-02-10T10:00+08:00", ref="Observation/charted", fio2="21")
    bare = reading(90, at="2025-02-20T10:00+08:00", ref="Observation/bare")
    on_oxygen = reading(99, at="2025-02-25T10:00+08:00", ref="Observation/o2", oxygen_flow="2")
    later_bare = spo2([charted, bare, on_oxygen])
    assert (later_bare.status, later_bare.rule, later_bare.evidence) == (
        NOT_MET,
        PRACTICE_RULE,
        ("Observation/bare",),
    )
    # By default the bare reading counts for nothing, so the charted one decides.
    default = spo2([charted, bare, on_oxygen], SUBJECT)
    assert (default.status, default.rule, default.evidence) == (MET, PLAIN_RULE, ("Observation/charted",))
    # A charted room-air reading after the bare one decides under either practice.
    charted_later = reading(95, at="2025-02-22T10:00+08:00", ref="Observation/charted", fio2="21")
    assert spo2([bare, charted_later]) == spo2([bare, charted_later], SUBJECT)
    assert spo2([bare, charted_later]).evidence == ("Observation/charted",)


def test_the_practice_changes_no_other_criterion() -> None:
    facts = [
        reading(95),
        fact("lvef", "2025-02-20", 60),
        fact("alt", "2025-02-20", 200),
        fact("ecog", "2025-02-20", 1),
    ]
    by_practice = eligibility.assess_eligibility(facts, ROOM_AIR_SITE, RULES.eligibility, None)
    by_default = eligibility.assess_eligibility(facts, SUBJECT, RULES.eligibility, None)
    others = [c for c in by_default.criteria if c.criterion != "spo2"]
    assert [c for c in by_practice.criteria if c.criterion != "spo2"] == others
    assert by_practice.overall is NOT_MET  # the ALT of 200 decides the whole, whatever SpO2 says


def test_the_oxygen_use_of_a_bare_reading_is_not_recorded() -> None:
    room_air = RULES.eligibility.room_air
    assert eligibility.oxygen_use(reading(95), [], [], room_air) == (eligibility.OxygenUse.NOT_RECORDED, ())
    conflicting = reading(95, oxygen_flow="0", fio2="40")
    assert eligibility.oxygen_use(conflicting, [], [], room_air)[0] is eligibility.OxygenUse.UNKNOWN


# ---------------------------------------------------------------- properties

CHARTED = tuple(attributes for attributes in SPO2_ATTRIBUTES if attributes)  # every reading has a component


@TIMELINE_BUDGET
@given(screening(spo2_attributes=CHARTED), screening(list(OXYGEN), prefix="o2"))
def test_the_practice_never_changes_the_verdict_on_readings_with_an_oxygen_record(
    facts: list[Fact], oxygen: list[Fact]
) -> None:
    """Every SpO2 reading carries a flow or FiO2 component: the practice has nothing to read."""
    timeline = facts + oxygen
    assert spo2(timeline) == spo2(timeline, SUBJECT)


def _bare(reading: Fact, oxygen: Sequence[Fact]) -> bool:
    """No O2 component on the reading and no O2 result charted within the pairing time."""
    pairing = dt.timedelta(minutes=RULES.eligibility.room_air.pairing_minutes)
    near = any(abs(o.effective_start - reading.effective_start) <= pairing for o in oxygen)
    return not (set(reading.attributes) & set(OXYGEN)) and not near


@st.composite
def with_oxygen_nearby(draw: st.DrawFn, facts: list[Fact]) -> list[Fact]:
    """``facts`` and, beside some SpO2 readings, an O2 result shortly before or after (some without value)."""
    pairing = RULES.eligibility.room_air.pairing_minutes
    out = list(facts)
    for index, found in enumerate(f for f in facts if f.concept == "spo2"):
        if draw(st.booleans()):
            concept = draw(st.sampled_from(OXYGEN))
            minutes = draw(st.integers(-2 * pairing, 2 * pairing))
            value = draw(st.one_of(st.none(), VALUES[concept]))
            at = found.effective_start + dt.timedelta(minutes=minutes)
            out.append(fact(concept, at, value, ref=f"Observation/near{index}"))
    return out


@TIMELINE_BUDGET
@given(screening(["spo2", "oxygen_flow", "fio2", "lvef"]).flatmap(with_oxygen_nearby))
def test_where_the_practice_changes_spo2_a_bare_reading_decided_and_the_rule_says_so(
    facts: list[Fact],
) -> None:
    """Mixed timelines: a result the practice changed was decided by a reading without oxygen record."""
    by_practice, by_default = spo2(facts), spo2(facts, SUBJECT)
    if by_practice.rule == PLAIN_RULE:
        assert by_practice == by_default
        return
    assert by_practice.rule == PRACTICE_RULE
    oxygen = [f for f in facts if f.concept in OXYGEN]
    decider = next(f for f in facts if f.source_ref == by_practice.evidence[0])
    assert by_practice.evidence == (decider.source_ref,)
    assert decider.concept == "spo2" and WINDOW_START <= decider.local_date <= ANCHOR
    assert _bare(decider, oxygen)
    assert by_practice.status is (
        MET if decider.value is not None and decider.value > T.spo2_above else NOT_MET
    )
    # By default the bare reading counts for nothing: an earlier charted one decides, or nothing does.
    if by_default.status is not UNKNOWN:
        earlier = next(f for f in facts if f.source_ref == by_default.evidence[0])
        assert earlier.effective_start <= decider.effective_start and not _bare(earlier, oxygen)
