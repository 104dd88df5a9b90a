"""A whole subject timeline through derive_subject: records, ids, issues, determinism."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from adapter.mapping.facts import Fact
from adapter.mapping.issues import IssueKind
from adapter.protocol import derive
from adapter.protocol.records import CriterionStatus, CyclePhase, RecordType, record_id
from adapter.protocol.rules import ProtocolRules

from .conftest import SUBJECT, d, daily_bags, fact

DAY0 = d("2025-04-20")


def timeline() -> list[Fact]:
    """Screening, one pre-transplant cycle, collection, transplant, recovery, 4 maintenance cycles, MRD."""
    screening = [
        fact("lvef", "2025-02-20T09:00+08:00", 62),
        fact("echocardiogram", "2025-02-20T09:00+08:00"),
        fact("creatinine", "2025-02-20T08:00+08:00", 0.9),
        fact("alt", "2025-02-20T08:00+08:00", 35, reference_high=50),
        fact("ast", "2025-02-20T08:00+08:00", 30),
        fact("bilirubin_total", "2025-02-20T08:00+08:00", 0.6),
        fact("spo2", "2025-02-20T10:00+08:00", 97),
        fact("oxygen_flow", "2025-02-20T10:20+08:00", 0),
        fact("dyspnea_grade", "2025-02-20T10:00+08:00", 0),
        fact("ecog", "2025-02-20T10:00+08:00", 0),
    ]
    pre = daily_bags(d("2025-03-03"), 28)  # ends 2025-03-31
    collection = [
        fact("mobilization", "2025-04-03T08:00+08:00", 300),
        fact("apheresis", "2025-04-07T09:00+08:00"),
        fact("apheresis", "2025-04-08T09:00+08:00"),
    ]
    transplant = [
        fact("auto_hsct", "2025-04-20T10:00+08:00", ref="Procedure/hsct"),
        fact("auto_hsct", "2025-04-20T11:00+08:00", ref="Procedure/hsct-dup", status="in-progress"),
    ]
    recovery = [
        fact("wbc", "2025-05-03T08:00+08:00", 2.5),
        fact("platelets", "2025-05-03T08:00+08:00", 60),
        fact("wbc", "2025-05-05T08:00+08:00", 3.4),
        fact("platelets", "2025-05-05T08:00+08:00", 52),
    ]
    maintenance = [f for k in range(4) for f in daily_bags(d("2025-05-10") + dt.timedelta(weeks=6 * k), 28)]
    follow_up = [
        fact("mrd_flow", "2025-06-01T08:00+08:00", 0.01, comparator="<"),
        fact("mrd_ngs", "2025-06-01T08:00+08:00", 0.0001, comparator="<"),
        fact("mrd_flow", "2025-07-01T08:00+08:00", 0.02),
        fact("mrd_flow", "2025-07-01T15:00+08:00", 0.01),
    ]
    return [*screening, *pre, *collection, *transplant, *recovery, *maintenance, *follow_up]


def dump(derivation: derive.Derivation) -> list[str]:
    return [r.model_dump_json() for r in derivation.records] + [
        i.model_dump_json() for i in derivation.issues
    ]


def test_full_timeline(rules: ProtocolRules) -> None:
    result = derive.derive_subject(timeline(), SUBJECT, rules)
    assert result.issues == ()
    by_type: dict[RecordType, list] = {}
    for record in result.records:
        by_type.setdefault(record.record_type, []).append(record)
    assert {t: len(rs) for t, rs in by_type.items()} == {
        RecordType.ELIGIBILITY: 1,
        RecordType.CYCLE: 5,
        RecordType.COLLECTION: 1,
        RecordType.TRANSPLANT: 1,
        RecordType.RECONSTITUTION: 1,
        RecordType.MRD: 4,
    }
    (screening,) = by_type[RecordType.ELIGIBILITY]
    assert screening.overall is CriterionStatus.MET
    assert screening.day_from_transplant == (d("2025-03-01") - DAY0).days
    (transplant,) = by_type[RecordType.TRANSPLANT]
    assert (transplant.day0, transplant.evidence) == (DAY0, ("Procedure/hsct",))
    (recon,) = by_type[RecordType.RECONSTITUTION]
    assert (recon.date, recon.day_from_transplant) == (d("2025-05-05"), 15)
    (collected,) = by_type[RecordType.COLLECTION]
    assert (collected.days_after_pre_transplant_cycle, collected.flags) == (7, ())
    phases = sorted((c.phase.value, c.number) for c in by_type[RecordType.CYCLE])
    assert phases == [("maintenance", n) for n in (1, 2, 3, 4)] + [("pre_transplant", 1)]
    assert all(c.flags == () for c in by_type[RecordType.CYCLE])
    cycle_ids = {c.record_id for c in by_type[RecordType.CYCLE]}
    assert record_id("NCT06507514", "S-001", "TreatmentCycle", "maintenance:4") in cycle_ids
    assert [m.day_from_transplant for m in by_type[RecordType.MRD]].count(72) == 2


def test_records_sorted_by_type_then_id(rules: ProtocolRules) -> None:
    records = derive.derive_subject(timeline(), SUBJECT, rules).records
    keys = [(r.record_type.value, r.record_id) for r in records]
    assert keys == sorted(keys)


@pytest.mark.parametrize("seed", range(5))
def test_byte_identical_in_any_order(rules: ProtocolRules, seed: int) -> None:
    facts = timeline()
    expected = dump(derive.derive_subject(facts, SUBJECT, rules))
    shuffled = facts[:]
    random.Random(seed).shuffle(shuffled)
    assert dump(derive.derive_subject(shuffled, SUBJECT, rules)) == expected
    # the same fact delivered twice counts once
    assert dump(derive.derive_subject(shuffled + facts[:10], SUBJECT, rules)) == expected


def test_ambiguous_day0_is_an_issue_and_nothing_counts_from_it(rules: ProtocolRules) -> None:
    facts = [*timeline(), fact("auto_hsct", "2025-04-22T10:00+08:00", ref="Procedure/hsct-2")]
    result = derive.derive_subject(facts, SUBJECT, rules)
    (issue,) = result.issues
    assert issue.kind is IssueKind.AMBIGUOUS_MATCH
    assert issue.source_refs == ("Procedure/hsct", "Procedure/hsct-2")
    types = {r.record_type for r in result.records}
    assert RecordType.TRANSPLANT not in types
    assert RecordType.RECONSTITUTION not in types and RecordType.MRD not in types
    cycles = [r for r in result.records if r.record_type is RecordType.CYCLE]
    assert {c.phase for c in cycles} == {CyclePhase.UNPHASED}
    assert all(r.day_from_transplant is None for r in result.records)


def test_without_a_transplant_cycles_are_unphased(rules: ProtocolRules) -> None:
    facts = [f for f in timeline() if f.concept != "auto_hsct"]
    result = derive.derive_subject(facts, SUBJECT, rules)
    assert result.issues == ()
    collection = next(r for r in result.records if r.record_type is RecordType.COLLECTION)
    assert collection.days_after_pre_transplant_cycle == 7


def test_facts_of_another_subject_are_refused(rules: ProtocolRules) -> None:
    other = SUBJECT.model_copy(update={"subject_id": "S-002"})
    with pytest.raises(ValueError, match="not of subject 'S-001'"):
        derive.derive_subject([*timeline(), fact("lvef", "2025-02-20", 60, subject=other)], SUBJECT, rules)


def test_rules_bound_to_another_site_are_refused(rules: ProtocolRules) -> None:
    north = rules.model_copy(update={"site": "demo-north"})
    with pytest.raises(ValueError, match="rules loaded for site 'demo-north'"):
        derive.derive_subject(timeline(), SUBJECT, north)
    assert derive.derive_subject([], SUBJECT, rules.model_copy(update={"site": "demo-east"})).records


def test_no_facts_still_gives_an_eligibility_assessment(rules: ProtocolRules) -> None:
    result = derive.derive_subject([], SUBJECT, rules)
    (record,) = result.records
    assert record.record_type is RecordType.ELIGIBILITY
    assert record.record_id == record_id("NCT06507514", "S-001", "EligibilityAssessment", "screening")
