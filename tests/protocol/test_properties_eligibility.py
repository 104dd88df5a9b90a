"""Properties of screening eligibility over generated results (hypothesis).

The rules (eligibility.py, thresholds.py, docs/design.md §4): LVEF >= limit;
creatinine, bilirubin, dyspnea grade and ECOG <= limit; ALT/AST <= multiple x
ULN (the result's own reference range, else the configured ULN); SpO2 >
limit, strictly, on room air only.  The latest result in the window
[anchor - window_days, anchor] (site-local days) decides.  A censored value
(``<0.1``) decides only when every value it admits is on one side of the
limit.  Criteria are met, not met or unknown; ranked in that order of
goodness, a worse value may never rank higher than a better one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from hypothesis import assume, example, given
from hypothesis import strategies as st

from adapter.mapping import catalog, units
from adapter.mapping.facts import Fact
from adapter.protocol import eligibility
from adapter.protocol.records import CriterionResult, CriterionStatus, EligibilityAssessment
from adapter.protocol.rules import ProtocolRules
from adapter.protocol.thresholds import Bound, judge

from .conftest import MAPPING_DIR, SUBJECT, bag, fact, tuned
from .strategies import (
    BUDGET,
    OFFSETS,
    RULES,
    TIMELINE_BUDGET,
    comparators,
    decimals,
    exact,
    moments,
    renamed,
    rewritten,
)

MET, NOT_MET, UNKNOWN = CriterionStatus.MET, CriterionStatus.NOT_MET, CriterionStatus.UNKNOWN
RANK = {NOT_MET: 0, UNKNOWN: 1, MET: 2}  # goodness: a worse input may never rank higher

T = RULES.eligibility.thresholds
ANCHOR = SUBJECT.enrolment_date or dt.date.min  # the default anchor is enrolment: 2025-03-01
WINDOW_START = ANCHOR - dt.timedelta(days=RULES.eligibility.screening.window_days)
CATALOG = catalog.load_catalog(MAPPING_DIR)

# How each value must relate to its limit, as docs/design.md §4 states it (not read from the code).
BOUNDS = {
    "lvef": Bound.AT_LEAST,
    "creatinine": Bound.AT_MOST,
    "alt": Bound.AT_MOST,
    "ast": Bound.AT_MOST,
    "bilirubin_total": Bound.AT_MOST,
    "spo2": Bound.ABOVE,
    "dyspnea_grade": Bound.AT_MOST,
    "ecog": Bound.AT_MOST,
}
CRITERIA = tuple(BOUNDS)
OXYGEN = ("oxygen_flow", "fio2")
CENSORABLE = ("lvef", "creatinine", "alt", "ast", "bilirubin_total")  # labs; scores and SpO2 are plain
ALL_CONCEPTS = (*CRITERIA, *OXYGEN, "wbc")  # wbc: a result no criterion reads

# Realistic values at a lab's precision, plus the values right at and next to each limit.
VALUES = {
    "lvef": st.one_of(decimals(20, 80, 1), st.sampled_from([T.lvef_min, T.lvef_min - 0.1])),
    "creatinine": st.one_of(
        decimals("0.2", 4, 2), st.sampled_from([T.creatinine_max, T.creatinine_max + 0.01])
    ),
    "alt": st.one_of(decimals(5, 400, 1), st.sampled_from([120.0, 120.1, 150.0, 99.9])),
    "ast": st.one_of(decimals(5, 400, 1), st.sampled_from([120.0, 120.1, 150.0, 99.9])),
    "bilirubin_total": st.one_of(decimals("0.1", 6, 2), st.sampled_from([T.bilirubin_max])),
    "spo2": st.one_of(decimals(80, 100, 1), st.sampled_from([T.spo2_above, T.spo2_above + 0.1])),
    "dyspnea_grade": st.integers(0, 4).map(float),
    "ecog": st.integers(0, 4).map(float),
    "oxygen_flow": st.sampled_from([0.0, 0.0, 1.0, 2.0, 4.0]),
    "fio2": st.sampled_from([21.0, 21.0, 28.0, 40.0]),
    "wbc": decimals(0, 10, 1),
}
ULNS = st.sampled_from([None, None, 33.3, 35.0, 40.0, 50.0])  # None: the configured ULN applies

# SpO2 O2 components (attributes of the SpO2 Observation itself).
ROOM_AIR = ({"oxygen_flow": "0"}, {"fio2": "21"}, {"oxygen_flow": "0", "fio2": "21"})
ON_OXYGEN_BOTH = ({"oxygen_flow": "2", "fio2": "40"}, {"oxygen_flow": "6", "fio2": "28"})
DISAGREEING = ({"oxygen_flow": "0", "fio2": "40"}, {"oxygen_flow": "3", "fio2": "21"})
SPO2_ATTRIBUTES = ({}, {}, *ROOM_AIR, {"oxygen_flow": "2"}, {"fio2": "40"}, *ON_OXYGEN_BOTH, *DISAGREEING)


@st.composite
def screening(
    draw: st.DrawFn,
    concepts: Sequence[str] = ALL_CONCEPTS,
    first: dt.date = ANCHOR - dt.timedelta(days=40),
    last: dt.date = ANCHOR + dt.timedelta(days=5),
    *,
    prefix: str = "obs",
    max_size: int = 10,
    spo2_attributes: Sequence[dict[str, str]] = SPO2_ATTRIBUTES,
) -> list[Fact]:
    """Results around the screening window, each with a unique reference."""
    out = []
    for index in range(draw(st.integers(0, max_size))):
        concept = draw(st.sampled_from(concepts))
        out.append(
            fact(
                concept,
                draw(moments(first, last)),
                draw(VALUES[concept]),
                comparator=draw(comparators()) if concept in CENSORABLE else None,
                reference_high=draw(ULNS) if concept in ("alt", "ast") else None,
                attributes=dict(draw(st.sampled_from(spo2_attributes))) if concept == "spo2" else None,
                ref=f"Observation/{prefix}{index}",
            )
        )
    return out


def assess(facts: Sequence[Fact], rules: ProtocolRules = RULES) -> EligibilityAssessment:
    return eligibility.assess_eligibility(facts, SUBJECT, rules.eligibility, None)


def criterion(facts: Sequence[Fact], name: str, rules: ProtocolRules = RULES) -> CriterionResult:
    return {c.criterion: c for c in assess(facts, rules).criteria}[name]


def single(concept: str, value: float, **extra: object) -> list[Fact]:
    """One result on a screening day; SpO2 on room air."""
    attributes = {"oxygen_flow": "0"} if concept == "spo2" else None
    return [
        fact(concept, "2025-02-20T08:00+08:00", value, attributes=attributes, ref="Observation/x", **extra)
    ]


def worse_first(bound: Bound, a: float, b: float) -> tuple[float, float]:
    """(worse, better): higher is worse for an upper limit, lower for a lower one."""
    return (max(a, b), min(a, b)) if bound is Bound.AT_MOST else (min(a, b), max(a, b))


# ---------------------------------------------------------------- thresholds and monotonicity


@BUDGET
@given(st.data())
def test_a_worse_value_never_ranks_higher(data: st.DataObject) -> None:
    concept = data.draw(st.sampled_from(CRITERIA))
    comparator = data.draw(comparators()) if concept in CENSORABLE else None
    uln = data.draw(ULNS) if concept in ("alt", "ast") else None
    worse, better = worse_first(BOUNDS[concept], data.draw(VALUES[concept]), data.draw(VALUES[concept]))
    at_worse = criterion(single(concept, worse, comparator=comparator, reference_high=uln), concept)
    at_better = criterion(single(concept, better, comparator=comparator, reference_high=uln), concept)
    assert RANK[at_worse.status] <= RANK[at_better.status]
    if comparator is None:  # a plain value with a known limit is always decided
        assert {at_worse.status, at_better.status} <= {MET, NOT_MET}


@BUDGET
@given(
    st.sampled_from(["alt", "ast"]),
    VALUES["alt"],
    comparators(),
    decimals(10, 100, 1),
    decimals(10, 100, 1),
)
def test_a_higher_uln_never_worsens_an_enzyme(
    analyte: str, value: float, comparator: str | None, uln_a: float, uln_b: float
) -> None:
    low, high = sorted((uln_a, uln_b))
    strict = criterion(single(analyte, value, comparator=comparator, reference_high=low), analyte)
    lenient = criterion(single(analyte, value, comparator=comparator, reference_high=high), analyte)
    assert RANK[strict.status] <= RANK[lenient.status]


# key, criterion, generated limit, lab step of that limit
LIMITS = [
    ("lvef_min", "lvef", exact(30, 70, 1), Decimal("0.1")),
    ("creatinine_max", "creatinine", exact("0.5", 3, 2), Decimal("0.01")),
    ("bilirubin_max", "bilirubin_total", exact("0.5", 5, 2), Decimal("0.01")),
    ("spo2_above", "spo2", exact(85, 95, 1), Decimal("0.1")),
    ("dyspnea_grade_max", "dyspnea_grade", st.integers(0, 4).map(Decimal), Decimal(1)),
    ("ecog_max", "ecog", st.integers(0, 4).map(Decimal), Decimal(1)),
]


@BUDGET
@given(st.data())
def test_a_value_at_a_generated_limit_follows_the_documented_bound(data: st.DataObject) -> None:
    """>= and <= include the limit, SpO2's > excludes it; one lab step past it decides the other way."""
    key, name, limits, step = data.draw(st.sampled_from(LIMITS))
    limit = data.draw(limits)
    number = int(limit) if key in ("dyspnea_grade_max", "ecog_max") else float(limit)
    rules = tuned(RULES, "eligibility.thresholds", **{key: number})
    bound = BOUNDS[name]
    unsafe = -step if bound in (Bound.AT_LEAST, Bound.ABOVE) else step

    def status(value: Decimal) -> CriterionStatus:
        return criterion(single(name, float(value)), name, rules).status

    assert status(limit) is (NOT_MET if bound is Bound.ABOVE else MET)
    assert status(limit + unsafe) is NOT_MET
    assert status(limit - unsafe) is MET


@BUDGET
@given(st.sampled_from(["alt", "ast"]), exact(1, 5, 1), exact(10, 100, 1), st.booleans())
def test_an_enzyme_at_exactly_the_multiple_of_its_uln_is_met(
    analyte: str, multiple: Decimal, uln: Decimal, own_uln: bool
) -> None:
    """Inclusive at multiple x ULN, whether the ULN is the result's own or the configured one."""
    rules = tuned(RULES, "eligibility.thresholds", **{f"{analyte}_max_uln": float(multiple)})
    if not own_uln:
        rules = tuned(rules, "eligibility", uln={analyte: float(uln)})
    reference_high = float(uln) if own_uln else None
    at_limit = multiple * uln

    def status(value: Decimal) -> CriterionStatus:
        return criterion(single(analyte, float(value), reference_high=reference_high), analyte, rules).status

    assert status(at_limit) is MET
    assert status(at_limit + Decimal("0.01")) is NOT_MET
    assert status(at_limit - Decimal("0.01")) is MET


def _interior(value: float, comparator: str, distances: list[float]) -> list[float]:
    """Values a censored result admits, at least 1e-6 (relative) inside its open end."""
    sign = -1.0 if comparator.startswith("<") else 1.0
    points = [value + sign * max(abs(value), 1.0) * d for d in distances]
    return [*points, value] if comparator.endswith("=") else points


@BUDGET
@given(
    st.sampled_from(list(Bound)),
    exact(0, 100, 2),
    st.one_of(st.none(), exact(0, 100, 2)),
    st.sampled_from(["<", "<=", ">", ">="]),
    st.lists(st.floats(1e-6, 1e3), min_size=1, max_size=5),
)
def test_a_censored_result_decides_only_what_every_value_it_admits_would(
    bound: Bound, limit: Decimal, value: Decimal | None, comparator: str, distances: list[float]
) -> None:
    at = float(limit if value is None else value)  # often exactly at the limit
    verdict = judge(at, comparator, bound, float(limit))
    if verdict is not UNKNOWN:
        for point in _interior(at, comparator, distances):
            assert judge(point, None, bound, float(limit)) is verdict, point
    assert judge(at, "=", bound, float(limit)) is judge(at, None, bound, float(limit))
    assert judge(at, "ad", bound, float(limit)) is UNKNOWN  # "sufficient to achieve" tells nothing


# ---------------------------------------------------------------- the same quantity in another unit


def _exact_verdict(quantity: Fraction, bound: Bound, limit: Fraction) -> CriterionStatus:
    met = {Bound.AT_MOST: quantity <= limit, Bound.AT_LEAST: quantity >= limit, Bound.ABOVE: quantity > limit}
    return MET if met[bound] else NOT_MET


UNIT_CASES = [
    # criterion, threshold key, source unit, exact factor to the canonical unit,
    # values as a lab writes them in that unit
    ("creatinine", "creatinine_max", "umol/L", Fraction("113.12") / 10000, exact(20, 300, 1)),
    ("creatinine", "creatinine_max", "mg/L", Fraction(1, 10), exact(2, 40, 1)),
    ("creatinine", "creatinine_max", "mmol/L", Fraction("113.12") / 10, exact("0.02", "0.3", 3)),
    ("bilirubin_total", "bilirubin_max", "umol/L", Fraction("584.66") / 10000, exact(2, 100, 1)),
    ("bilirubin_total", "bilirubin_max", "mg/L", Fraction(1, 10), exact(1, 50, 1)),
    ("lvef", "lvef_min", "1", Fraction(100), exact("0.2", "0.8", 3)),
    ("spo2", "spo2_above", "1", Fraction(100), exact("0.8", 1, 3)),
]
UNIT_LIMITS = {  # the configured limit or a generated one
    "creatinine_max": st.one_of(st.just(Decimal(str(T.creatinine_max))), exact("0.5", 3, 2)),
    "bilirubin_max": st.one_of(st.just(Decimal(str(T.bilirubin_max))), exact("0.5", 5, 2)),
    "lvef_min": st.one_of(st.just(Decimal(str(T.lvef_min))), exact(30, 70, 1)),
    "spo2_above": st.one_of(st.just(Decimal(str(T.spo2_above))), exact(85, 95, 1)),
}


def _as_decimal(number: Fraction) -> Decimal | None:
    """The fraction as a finite decimal, or None when it has none (1.6 mg/dL in umol/L)."""
    scaled = number * 10**9
    return None if scaled.denominator != 1 else Decimal(scaled.numerator).scaleb(-9).normalize()


@BUDGET
@given(st.data())
def test_a_converted_value_gets_the_verdict_of_the_exact_quantity(data: st.DataObject) -> None:
    """Converted as the mapping stage does (units.convert with the catalog's molar mass).

    Float conversion is inexact (0.57 -> 56.99999999999999 %); the verdict must
    be the one the exact quantity deserves, including a quantity exactly at the
    limit, whenever the limit can be written in the source unit.
    """
    name, key, unit, factor, quantities = data.draw(st.sampled_from(UNIT_CASES))
    limit = data.draw(UNIT_LIMITS[key])
    at_limit = _as_decimal(Fraction(limit) / factor)
    quantity = data.draw(quantities if at_limit is None else st.one_of(st.just(at_limit), quantities))
    spec = CATALOG.concepts[name].spec
    assert spec.unit is not None
    value = units.convert(float(quantity), unit, spec.unit, molar_mass=spec.molar_mass)
    rules = tuned(RULES, "eligibility.thresholds", **{key: float(limit)})
    expected = _exact_verdict(Fraction(quantity) * factor, BOUNDS[name], Fraction(limit))
    assert criterion(single(name, value), name, rules).status is expected


@BUDGET
@given(st.sampled_from(["alt", "ast"]), exact("0.1", 8, 3), exact("0.3", 1, 2))
@example("alt", Decimal("1.2"), Decimal("0.4"))  # exactly 3 x ULN
def test_an_enzyme_and_its_uln_in_ukat_get_the_exact_verdict(
    analyte: str, quantity: Decimal, uln: Decimal
) -> None:
    """ALT/AST and their own ULN both sent in ukat/L: the engine converts both (ULN rounded to 6 places)."""
    value = units.convert(float(quantity), "ukat/L", "U/L")
    reference_high = round(units.convert(float(uln), "ukat/L", "U/L"), 6)
    multiple = Fraction(str(T.alt_max_uln if analyte == "alt" else T.ast_max_uln))
    expected = _exact_verdict(Fraction(quantity), Bound.AT_MOST, multiple * Fraction(uln))
    assert criterion(single(analyte, value, reference_high=reference_high), analyte).status is expected


# ---------------------------------------------------------------- order, time zones, duplicates


@TIMELINE_BUDGET
@given(st.data())
def test_order_and_exact_duplicates_do_not_matter(data: st.DataObject) -> None:
    facts = data.draw(screening())
    again = data.draw(st.permutations(facts))
    if facts:
        again += data.draw(st.lists(st.sampled_from(facts), max_size=4))
    assert assess(again).model_dump_json() == assess(facts).model_dump_json()


@TIMELINE_BUDGET
@given(screening(), st.sampled_from(OFFSETS))
def test_the_offset_a_time_was_written_in_does_not_matter(facts: list[Fact], offset: dt.timezone) -> None:
    assert assess(rewritten(facts, offset)) == assess(facts)


# ---------------------------------------------------------------- which results count


@TIMELINE_BUDGET
@given(st.data())
def test_a_criterion_reads_only_its_own_results(data: st.DataObject) -> None:
    """SpO2 also reads the oxygen results; no other criterion reads anything but its concept."""
    facts = data.draw(screening())
    name = data.draw(st.sampled_from(CRITERIA))
    own = {name, *OXYGEN} if name == "spo2" else {name}
    others = data.draw(screening([c for c in ALL_CONCEPTS if c not in own], prefix="other"))
    assert criterion(facts + others, name) == criterion(facts, name)


@TIMELINE_BUDGET
@given(screening(), st.sampled_from(CRITERIA))
def test_without_a_value_in_the_window_a_criterion_is_unknown(facts: list[Fact], name: str) -> None:
    record = assess([f for f in facts if f.concept != name])
    result = {c.criterion: c for c in record.criteria}[name]
    assert (result.status, result.reason, result.value, result.evidence) == (
        UNKNOWN,
        eligibility.NO_VALUE,
        None,
        (),
    )
    assert record.overall is not MET


@TIMELINE_BUDGET
@given(screening())
def test_overall_is_not_met_if_any_is_not_met_else_unknown_if_any_is_unknown(facts: list[Fact]) -> None:
    record = assess(facts)
    statuses = [c.status for c in record.criteria]
    assert len(statuses) == len(CRITERIA)
    expected = NOT_MET if NOT_MET in statuses else UNKNOWN if UNKNOWN in statuses else MET
    assert record.overall is expected


def _outside_window() -> st.SearchStrategy[list[Fact]]:
    """Non-oxygen results before the window or after the anchor (site-local days)."""
    concepts = [c for c in ALL_CONCEPTS if c not in OXYGEN]
    before = screening(concepts, ANCHOR - dt.timedelta(days=120), WINDOW_START - dt.timedelta(days=1))
    after = screening(concepts, ANCHOR + dt.timedelta(days=1), ANCHOR + dt.timedelta(days=60))
    return st.tuples(before, after).map(lambda pair: renamed(pair[0] + pair[1], "outside"))


@TIMELINE_BUDGET
@given(screening(), _outside_window())
def test_results_outside_the_window_never_matter(facts: list[Fact], outside: list[Fact]) -> None:
    """Oxygen results are the documented exception: they pair with SpO2 by time, window or not."""
    assert assess(facts + outside) == assess(facts)


@TIMELINE_BUDGET
@given(st.data())
def test_the_latest_result_in_the_window_decides(data: st.DataObject) -> None:
    """An older result never overrides it; a newer one (up to the anchor) always replaces it."""
    facts = data.draw(screening())
    name = data.draw(st.sampled_from(CRITERIA))
    before = criterion(facts, name)
    decider = next((f for f in facts if f.source_ref in before.evidence[:1]), None)
    at = data.draw(moments(WINDOW_START, ANCHOR))
    # For SpO2 "result" means a room-air reading (both O2 components on it, so nothing can re-pair it).
    attributes = {"oxygen_flow": "0", "fio2": "21"} if name == "spo2" else None
    new = fact(name, at, data.draw(VALUES[name]), attributes=attributes, ref="Observation/new")
    # An SpO2 reading on oxygen leaves the criterion unknown, and an older room-air one may then decide.
    decided = name != "spo2" or before.status is not UNKNOWN
    if decider is not None and decided and at < decider.effective_start:
        assert criterion([*facts, new], name) == before
    current = [f for f in facts if f.concept == name and WINDOW_START <= f.local_date <= ANCHOR]
    if all(at > f.effective_start for f in current):
        result = criterion([*facts, new], name)
        assert (result.evidence[:1], result.value, result.date) == (
            ("Observation/new",),
            new.value,
            new.local_date,
        )


@TIMELINE_BUDGET
@given(screening(), st.integers(0, 45), st.integers(0, 45))
def test_widening_the_window_keeps_every_decided_criterion(facts: list[Fact], a: int, b: int) -> None:
    narrow = tuned(RULES, "eligibility.screening", window_days=min(a, b))
    wide = tuned(RULES, "eligibility.screening", window_days=max(a, b))
    wide_criteria = {c.criterion: c for c in assess(facts, wide).criteria}
    for result in assess(facts, narrow).criteria:
        if result.status is not UNKNOWN:
            assert wide_criteria[result.criterion] == result


@TIMELINE_BUDGET
@given(screening(), st.lists(moments(ANCHOR - dt.timedelta(days=20), ANCHOR), min_size=1, max_size=4))
def test_later_infusions_do_not_move_the_first_infusion_anchor(
    facts: list[Fact], starts: list[dt.datetime]
) -> None:
    rules = tuned(RULES, "eligibility.screening", anchor="first_infusion")
    bags = [
        bag(start.isoformat(), None, ref=f"MedicationAdministration/{n}") for n, start in enumerate(starts)
    ]
    first = min(bags, key=lambda b: b.effective_start)
    record = assess([*facts, first], rules)
    assert record.anchor_date == first.local_date
    assert assess(facts + bags, rules) == record


# ---------------------------------------------------------------- SpO2 on room air


@TIMELINE_BUDGET
@given(
    screening(),
    st.lists(
        st.tuples(
            moments(WINDOW_START, ANCHOR), VALUES["spo2"], st.sampled_from([*ON_OXYGEN_BOTH, *DISAGREEING])
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_readings_on_oxygen_or_of_unknown_oxygen_use_never_decide_spo2(
    facts: list[Fact], readings: list[tuple[dt.datetime, float, dict[str, str]]]
) -> None:
    """Both O2 components are on the reading itself, so no separate result can make it room air."""
    extra = [
        fact("spo2", at, value, attributes=dict(attributes), ref=f"Observation/o2-{n}")
        for n, (at, value, attributes) in enumerate(readings)
    ]
    before = criterion(facts, "spo2")
    after = criterion(facts + extra, "spo2")
    if before.status is UNKNOWN:
        assert after.status is UNKNOWN
    else:
        assert after == before


@TIMELINE_BUDGET
@given(
    screening(["spo2", "wbc"], spo2_attributes=(*ROOM_AIR[2:], *ON_OXYGEN_BOTH, *DISAGREEING)),
    screening(list(OXYGEN), prefix="o2"),
)
def test_oxygen_components_on_the_reading_beat_separate_results(
    facts: list[Fact], oxygen: list[Fact]
) -> None:
    assert criterion(facts + oxygen, "spo2") == criterion(facts, "spo2")


@TIMELINE_BUDGET
@given(screening(["spo2", "lvef"], spo2_attributes=({},)), screening(list(OXYGEN), prefix="o2"))
def test_separate_oxygen_results_pair_only_within_the_pairing_time(
    facts: list[Fact], oxygen: list[Fact]
) -> None:
    pairing = dt.timedelta(minutes=RULES.eligibility.room_air.pairing_minutes)
    readings = [f.effective_start for f in facts if f.concept == "spo2"]
    far = [o for o in oxygen if all(abs(o.effective_start - at) > pairing for at in readings)]
    assume(far)
    result = criterion(facts + far, "spo2")
    assert result == criterion(facts, "spo2")
    in_window = [f for f in facts if f.concept == "spo2" and WINDOW_START <= f.local_date <= ANCHOR]
    if in_window:  # no component and no paired result: oxygen use is unknown
        assert (result.status, result.reason) == (UNKNOWN, eligibility.OXYGEN_UNKNOWN)


@TIMELINE_BUDGET
@given(screening(["spo2"], spo2_attributes=(ROOM_AIR[2], *ON_OXYGEN_BOTH, *DISAGREEING)))
def test_the_latest_room_air_reading_decides_spo2(facts: list[Fact]) -> None:
    """Every reading carries both O2 components, so which ones are on room air is known here."""
    in_window = [f for f in facts if WINDOW_START <= f.local_date <= ANCHOR]
    on_room_air = [f for f in in_window if f.attributes == ROOM_AIR[2]]
    assume(len({f.effective_start for f in in_window}) == len(in_window))  # no ties to break
    result = criterion(facts, "spo2")
    if not on_room_air:  # unknown, and the latest reading says why
        assert result.status is UNKNOWN
        if not in_window:
            assert result.reason == eligibility.NO_VALUE
            return
        last = max(in_window, key=lambda f: f.effective_start)
        on_oxygen = last.attributes in ON_OXYGEN_BOTH
        assert result.reason == (eligibility.ON_OXYGEN if on_oxygen else eligibility.OXYGEN_UNKNOWN)
        assert result.evidence == (last.source_ref,)
        return
    latest = max(on_room_air, key=lambda f: f.effective_start)
    assert (result.evidence, result.value, result.date) == (
        (latest.source_ref,),
        latest.value,
        latest.local_date,
    )
    assert result.status is (MET if latest.value is not None and latest.value > T.spo2_above else NOT_MET)


@BUDGET
@given(
    st.integers(-3, 3).map(lambda k: k * RULES.eligibility.room_air.pairing_minutes),
    st.integers(-2, 2),
    st.sampled_from([("oxygen_flow", 0.0), ("fio2", 21.0)]),
)
def test_a_separate_oxygen_result_pairs_within_the_pairing_minutes_inclusive(
    whole: int, extra: int, oxygen: tuple[str, float]
) -> None:
    """A room-air O2 result makes a bare SpO2 reading room air exactly when it is close enough."""
    minutes = whole + extra  # around 0, +-1, +-2 and +-3 pairing times
    reading = fact("spo2", "2025-02-20T08:00+08:00", 97, ref="Observation/spo2")
    concept, value = oxygen
    o2 = fact(concept, reading.effective_start + dt.timedelta(minutes=minutes), value, ref="Observation/o2")
    result = criterion([reading, o2], "spo2")
    if abs(minutes) <= RULES.eligibility.room_air.pairing_minutes:
        assert (result.status, result.evidence) == (MET, ("Observation/spo2", "Observation/o2"))
    else:
        assert (result.status, result.reason) == (UNKNOWN, eligibility.OXYGEN_UNKNOWN)
