"""Organ-function eligibility at screening (docs/design.md §4).

Each criterion is met, not met, or unknown, with the result that decided it.
The latest result in the screening window decides; the window is the
``window_days`` site-local days up to and including the anchor (enrolment or
first blinatumomab infusion), so an older result is simply not in it ("stale"
and "missing" are the same answer: no value in window).

SpO2 must be measured without supplemental oxygen.  A reading is on room air
when its O2 flow is 0 or its FiO2 at most 21 % (components of the same
Observation, else separate results within ``pairing_minutes``); when the two
disagree, or neither is known, oxygen use is unknown.  The latest room-air
reading in the window decides; readings on oxygen or of unknown oxygen use
can neither show nor refute eligibility, so without a room-air reading the
criterion is unknown and says why.

Most sites chart no oxygen beside a screening SpO2 at all, so a site may
state its practice (``SubjectContext.spo2_without_oxygen_record``):
``"room_air"`` reads a reading with *no* oxygen record as taken on room air.
Only the absence of any record is read that way; a record that disagrees
with itself or cannot be read stays unknown, and a charted one decides as
charted.  A result the practice decided says so in its ``rule``, so the
trial repository can tell it from a charted room-air reading.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from enum import Enum

from adapter.mapping.facts import Fact
from adapter.protocol import records, timeline
from adapter.protocol.context import Spo2WithoutOxygenRecord, SubjectContext
from adapter.protocol.records import CriterionResult, CriterionStatus
from adapter.protocol.rules import Analyte, EligibilityRules, RoomAirRules
from adapter.protocol.thresholds import Bound, judge

NATURAL_KEY = "screening"
STUDY_DRUG = "blinatumomab"
SPO2 = "spo2"
OXYGEN_FLOW = "oxygen_flow"
FIO2 = "fio2"

NO_ANCHOR = "no anchor date"
NO_VALUE = "no value in window"
ULN_MISSING = "ULN missing"
OXYGEN_UNKNOWN = "oxygen use unknown"
ON_OXYGEN = "measured on supplemental oxygen"
UNDECIDED = "censored value straddles the limit"
# Appended to the SpO2 rule only when the site's practice, not a charted value, made a reading room air.
PRACTICE_APPLIED = " (site practice: no oxygen record = room air)"


class OxygenUse(Enum):
    """What the oxygen record beside one SpO2 reading says."""

    ROOM_AIR = "room_air"
    SUPPLEMENTAL = "supplemental"
    UNKNOWN = "unknown"  # charted, but the values disagree, cannot be read or straddle the limit
    NOT_RECORDED = "not_recorded"  # no flow or FiO2 on the reading and none charted near it


def anchor_date(facts: Sequence[Fact], subject: SubjectContext, rules: EligibilityRules) -> dt.date | None:
    """The screening anchor: enrolment date, or local date of the first blinatumomab."""
    if rules.screening.anchor == "enrolment":
        return subject.enrolment_date
    infusions = [fact.local_date for fact in facts if fact.concept == STUDY_DRUG]
    return min(infusions, default=None)


def assess_eligibility(
    facts: Sequence[Fact],
    subject: SubjectContext,
    rules: EligibilityRules,
    day0: dt.date | None,
) -> records.EligibilityAssessment:
    """The screening EligibilityAssessment for one subject (always produced)."""
    anchor = anchor_date(facts, subject, rules)
    window_start: dt.date | None = None
    in_window: list[Fact] = []
    if anchor is not None:
        window_start = anchor - dt.timedelta(days=rules.screening.window_days)
        in_window = [f for f in facts if window_start <= f.local_date <= anchor and f.value is not None]
    t = rules.thresholds
    criteria = (
        _criterion(in_window, anchor, "lvef", Bound.AT_LEAST, t.lvef_min, "%"),
        _criterion(in_window, anchor, "creatinine", Bound.AT_MOST, t.creatinine_max, "mg/dL"),
        _enzyme(in_window, anchor, "alt", t.alt_max_uln, rules, subject.site),
        _enzyme(in_window, anchor, "ast", t.ast_max_uln, rules, subject.site),
        _criterion(in_window, anchor, "bilirubin_total", Bound.AT_MOST, t.bilirubin_max, "mg/dL"),
        _spo2(in_window, facts, anchor, t.spo2_above, rules.room_air, subject.spo2_without_oxygen_record),
        _criterion(in_window, anchor, "dyspnea_grade", Bound.AT_MOST, t.dyspnea_grade_max, "(CTCAE v5.0)"),
        _criterion(in_window, anchor, "ecog", Bound.AT_MOST, t.ecog_max),
    )
    evidence = tuple(dict.fromkeys(ref for c in criteria for ref in c.evidence))
    return records.EligibilityAssessment(
        **subject.record_fields(
            records.RecordType.ELIGIBILITY, NATURAL_KEY, on=anchor, day0=day0, evidence=evidence
        ),
        anchor=rules.screening.anchor,
        anchor_date=anchor,
        window_start=window_start,
        overall=overall(criteria),
        criteria=criteria,
    )


def overall(criteria: Sequence[CriterionResult]) -> CriterionStatus:
    """Not met if any criterion is not met, else unknown if any is unknown, else met."""
    statuses = {c.status for c in criteria}
    if CriterionStatus.NOT_MET in statuses:
        return CriterionStatus.NOT_MET
    if CriterionStatus.UNKNOWN in statuses:
        return CriterionStatus.UNKNOWN
    return CriterionStatus.MET


def _decided(
    name: str,
    rule: str,
    bound: Bound,
    fact: Fact,
    limit: float | None,
    extra_refs: tuple[str, ...] = (),
) -> CriterionResult:
    """A criterion judged on one fact (unknown when its limit is unknown)."""
    if fact.value is None:  # the window holds only facts with values; kept for the type checker
        return _undecided(name, rule, limit, NO_VALUE)
    status = CriterionStatus.UNKNOWN
    reason: str | None = ULN_MISSING
    if limit is not None:
        status = judge(fact.value, fact.comparator, bound, limit)
        reason = UNDECIDED if status is CriterionStatus.UNKNOWN else None
    return CriterionResult(
        criterion=name,
        status=status,
        rule=rule,
        value=fact.value,
        unit=fact.unit,
        limit=limit,
        date=fact.local_date,
        reason=reason,
        evidence=(fact.source_ref, *extra_refs),
    )


def _undecided(name: str, rule: str, limit: float | None, reason: str) -> CriterionResult:
    return CriterionResult(
        criterion=name, status=CriterionStatus.UNKNOWN, rule=rule, limit=limit, reason=reason
    )


def _criterion(
    in_window: Sequence[Fact],
    anchor: dt.date | None,
    concept: str,
    bound: Bound,
    limit: float,
    unit: str | None = None,
) -> CriterionResult:
    rule = f"{concept} {bound.value} {limit:g}" + (f" {unit}" if unit else "")
    if anchor is None:
        return _undecided(concept, rule, limit, NO_ANCHOR)
    fact = timeline.latest(f for f in in_window if f.concept == concept)
    if fact is None:
        return _undecided(concept, rule, limit, NO_VALUE)
    return _decided(concept, rule, bound, fact, limit)


def _enzyme(
    in_window: Sequence[Fact],
    anchor: dt.date | None,
    analyte: Analyte,
    multiple: float,
    rules: EligibilityRules,
    site: str,
) -> CriterionResult:
    """ALT/AST against a multiple of the result's own ULN, else the site's configured ULN."""
    rule = f"{analyte} {Bound.AT_MOST.value} {multiple:g} x ULN"
    if anchor is None:
        return _undecided(analyte, rule, None, NO_ANCHOR)
    fact = timeline.latest(f for f in in_window if f.concept == analyte)
    if fact is None:
        return _undecided(analyte, rule, None, NO_VALUE)
    uln = fact.reference_high if fact.reference_high is not None else rules.uln_for(analyte, site)
    return _decided(analyte, rule, Bound.AT_MOST, fact, None if uln is None else round(multiple * uln, 6))


def _spo2(
    in_window: Sequence[Fact],
    facts: Sequence[Fact],
    anchor: dt.date | None,
    limit: float,
    room_air: RoomAirRules,
    practice: Spo2WithoutOxygenRecord,
) -> CriterionResult:
    rule = f"{SPO2} {Bound.ABOVE.value} {limit:g} % on room air"
    if anchor is None:
        return _undecided(SPO2, rule, limit, NO_ANCHOR)
    readings = timeline.of_concept(in_window, SPO2)
    if not readings:
        return _undecided(SPO2, rule, limit, NO_VALUE)
    # Oxygen results pair by time, so they are looked up in all facts, not only the window.
    flows = timeline.of_concept(facts, OXYGEN_FLOW)
    fio2s = timeline.of_concept(facts, FIO2)
    assessed = [(reading, *oxygen_use(reading, flows, fio2s, room_air)) for reading in readings]
    on_room_air = [a for a in assessed if _counts_as_room_air(a[1], practice)]
    if on_room_air:
        reading, use, oxygen_refs = on_room_air[-1]
        if use is OxygenUse.NOT_RECORDED:
            rule += PRACTICE_APPLIED
        return _decided(SPO2, rule, Bound.ABOVE, reading, limit, oxygen_refs)
    reading, use, oxygen_refs = assessed[-1]
    return CriterionResult(
        criterion=SPO2,
        status=CriterionStatus.UNKNOWN,
        rule=rule,
        value=reading.value,
        unit=reading.unit,
        limit=limit,
        date=reading.local_date,
        reason=ON_OXYGEN if use is OxygenUse.SUPPLEMENTAL else OXYGEN_UNKNOWN,
        evidence=(reading.source_ref, *oxygen_refs),
    )


def _counts_as_room_air(use: OxygenUse, practice: Spo2WithoutOxygenRecord) -> bool:
    """A reading charted on room air does; one with no oxygen record only by the site's practice."""
    return use is OxygenUse.ROOM_AIR or (use is OxygenUse.NOT_RECORDED and practice == "room_air")


def oxygen_use(
    reading: Fact, flows: Sequence[Fact], fio2s: Sequence[Fact], rules: RoomAirRules
) -> tuple[OxygenUse, tuple[str, ...]]:
    """Whether an SpO2 reading was on room air, and the separate O2 facts that told.

    ``NOT_RECORDED`` only when nothing about oxygen was charted: no flow or
    FiO2 component on the reading (readable or not) and no flow or FiO2
    result (with a value or not) within the pairing time.
    """
    verdicts: list[CriterionStatus] = []
    refs: list[str] = []
    recorded = False
    for concept, candidates, limit in (
        (OXYGEN_FLOW, flows, rules.oxygen_flow_max),
        (FIO2, fio2s, rules.fio2_max),
    ):
        # A component of the SpO2 Observation itself beats a separately charted result.
        component = reading.attributes.get(concept)
        value, comparator, paired = _number(component), None, None
        if value is None:
            paired = _nearest(reading, candidates, dt.timedelta(minutes=rules.pairing_minutes))
            if paired is not None and paired.value is not None:
                value, comparator = paired.value, paired.comparator
                refs.append(paired.source_ref)
        recorded = recorded or component is not None or paired is not None
        if value is not None:
            verdicts.append(judge(value, comparator, Bound.AT_MOST, limit))
    if not recorded:
        return OxygenUse.NOT_RECORDED, ()
    decided = set(verdicts) - {CriterionStatus.UNKNOWN}
    if decided == {CriterionStatus.MET}:
        return OxygenUse.ROOM_AIR, tuple(refs)
    if decided == {CriterionStatus.NOT_MET}:
        return OxygenUse.SUPPLEMENTAL, tuple(refs)
    return OxygenUse.UNKNOWN, tuple(refs)


def _nearest(reading: Fact, candidates: Sequence[Fact], within: dt.timedelta) -> Fact | None:
    """The candidate closest in time (within the pairing window); earlier wins a tie."""
    best: tuple[dt.timedelta, bool, int] | None = None
    chosen: Fact | None = None
    for index, candidate in enumerate(candidates):
        delta = candidate.effective_start - reading.effective_start
        if abs(delta) > within:
            continue
        key = (abs(delta), delta > dt.timedelta(0), index)
        if best is None or key < best:
            best, chosen = key, candidate
    return chosen


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
