"""Screening organ-function eligibility: thresholds, window, anchor, SpO2 on room air."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from adapter.mapping.facts import Fact
from adapter.protocol import eligibility
from adapter.protocol.records import CriterionResult, CriterionStatus, EligibilityAssessment
from adapter.protocol.rules import ProtocolRules

from .conftest import SUBJECT, bag, d, fact, tuned

MET, NOT_MET, UNKNOWN = CriterionStatus.MET, CriterionStatus.NOT_MET, CriterionStatus.UNKNOWN
ON_AIR = {"oxygen_flow": "0"}


def assess(facts: Sequence[Fact], rules: ProtocolRules, subject=SUBJECT) -> EligibilityAssessment:
    return eligibility.assess_eligibility(facts, subject, rules.eligibility, None)


def criterion(facts: Sequence[Fact], rules: ProtocolRules, name: str) -> CriterionResult:
    return {c.criterion: c for c in assess(facts, rules).criteria}[name]


def healthy(day: str = "2025-02-20") -> list[Fact]:
    """Every criterion met on one screening day (anchor: enrolment 2025-03-01)."""
    return [
        fact("lvef", f"{day}T09:00+08:00", 60),
        fact("creatinine", f"{day}T08:00+08:00", 0.8),
        fact("alt", f"{day}T08:00+08:00", 30, reference_high=50),
        fact("ast", f"{day}T08:00+08:00", 25, reference_high=40),
        fact("bilirubin_total", f"{day}T08:00+08:00", 0.7),
        fact("spo2", f"{day}T10:00+08:00", 98, attributes=ON_AIR),
        fact("dyspnea_grade", f"{day}T10:00+08:00", 0),
        fact("ecog", f"{day}T10:00+08:00", 1),
    ]


THRESHOLD_CASES = [
    # concept, value, extra fact fields, criterion, expected
    ("lvef", 50, {}, "lvef", MET),
    ("lvef", 49.9, {}, "lvef", NOT_MET),
    ("creatinine", 1.6, {}, "creatinine", MET),
    ("creatinine", 141.44 / 88.4, {}, "creatinine", MET),  # 141.44 µmol/L converted
    ("creatinine", 1.61, {}, "creatinine", NOT_MET),
    ("creatinine", 0.3, {"comparator": "<"}, "creatinine", MET),
    ("alt", 120, {}, "alt", MET),  # 3.0 x configured ULN 40
    ("alt", 120.1, {}, "alt", NOT_MET),
    ("alt", 150, {"reference_high": 50}, "alt", MET),  # the result's own ULN wins
    ("alt", 151, {"reference_high": 50}, "alt", NOT_MET),
    ("alt", 99.9, {"reference_high": 33.3}, "alt", MET),  # 3 x 33.3 = 99.89999999999999
    ("ast", 120, {}, "ast", MET),
    ("ast", 121, {}, "ast", NOT_MET),
    ("bilirubin_total", 2.0, {}, "bilirubin_total", MET),
    ("bilirubin_total", 2.01, {}, "bilirubin_total", NOT_MET),
    ("bilirubin_total", 2.5, {"comparator": ">"}, "bilirubin_total", NOT_MET),
    ("spo2", 91, {"attributes": ON_AIR}, "spo2", NOT_MET),
    ("spo2", 91.1, {"attributes": ON_AIR}, "spo2", MET),
    ("dyspnea_grade", 1, {}, "dyspnea_grade", MET),
    ("dyspnea_grade", 2, {}, "dyspnea_grade", NOT_MET),
    ("ecog", 0, {}, "ecog", MET),
    ("ecog", 1, {}, "ecog", MET),
    ("ecog", 2, {}, "ecog", NOT_MET),
]


@pytest.mark.parametrize(("concept", "value", "extra", "name", "expected"), THRESHOLD_CASES)
def test_threshold_boundaries(
    rules: ProtocolRules, concept: str, value: float, extra: dict, name: str, expected: CriterionStatus
) -> None:
    decisive = fact(concept, "2025-02-25T08:00+08:00", value, ref=f"Observation/{concept}-x", **extra)
    result = criterion([*healthy(), decisive], rules, name)
    assert result.status is expected
    assert result.value == value
    assert result.evidence[0] == f"Observation/{concept}-x"
    assert result.date == d("2025-02-25")
    assert result.reason is None


def test_enzyme_limit_uses_the_site_uln(rules: ProtocolRules) -> None:
    site_rules = tuned(rules, "eligibility", site_uln={"demo-east": {"alt": 50.0}})
    result = criterion([fact("alt", "2025-02-25", 150)], site_rules, "alt")
    assert (result.status, result.limit) == (MET, 150.0)
    assert criterion([fact("ast", "2025-02-25", 150)], site_rules, "ast").status is NOT_MET


def test_enzyme_without_any_uln_is_unknown(rules: ProtocolRules) -> None:
    no_uln = tuned(rules, "eligibility", uln={})
    result = criterion([fact("alt", "2025-02-25", 20)], no_uln, "alt")
    assert (result.status, result.reason, result.value, result.limit) == (UNKNOWN, "ULN missing", 20, None)
    with_own = criterion([fact("alt", "2025-02-25", 20, reference_high=40)], no_uln, "alt")
    assert with_own.status is MET


def test_censored_value_straddling_the_limit_is_unknown(rules: ProtocolRules) -> None:
    result = criterion([fact("bilirubin_total", "2025-02-25", 3.0, comparator="<")], rules, "bilirubin_total")
    assert (result.status, result.reason) == (UNKNOWN, "censored value straddles the limit")


WINDOW_CASES = [
    # time of the only LVEF result, counts? (anchor 2025-03-01, window_start 2025-02-01)
    ("2025-02-01T00:00+08:00", True),  # first day of the window
    ("2025-01-31T23:59+08:00", False),  # one minute too early: stale
    ("2025-01-31T16:30Z", True),  # 00:30 local on 1 Feb
    ("2025-03-01T23:30+08:00", True),  # anchor day, late evening local
    ("2025-03-01T15:30Z", True),  # the same instant written in UTC
    ("2025-03-01T16:30Z", False),  # 00:30 local on 2 March: after the anchor
    ("2025-03-02T08:00+08:00", False),
]


@pytest.mark.parametrize(("at", "counts"), WINDOW_CASES)
def test_screening_window_in_local_days(rules: ProtocolRules, at: str, counts: bool) -> None:
    result = criterion([fact("lvef", at, 60)], rules, "lvef")
    if counts:
        assert result.status is MET
    else:
        assert (result.status, result.reason, result.evidence) == (UNKNOWN, "no value in window", ())


def test_window_bounds_on_the_record(rules: ProtocolRules) -> None:
    record = assess(healthy(), rules)
    assert (record.anchor, record.anchor_date, record.window_start) == (
        "enrolment",
        d("2025-03-01"),
        d("2025-02-01"),
    )
    assert record.overall is MET
    assert record.day_from_transplant is None


def test_latest_value_in_window_decides_whatever_the_input_order(rules: ProtocolRules) -> None:
    early_bad = fact("lvef", "2025-02-05T09:00+08:00", 40, ref="Observation/early")
    late_good = fact("lvef", "2025-02-20T09:00+08:00", 55, ref="Observation/late")
    after_anchor = fact("lvef", "2025-03-03T09:00+08:00", 30, ref="Observation/after")
    for facts in ([early_bad, late_good, after_anchor], [after_anchor, late_good, early_bad]):
        result = criterion(facts, rules, "lvef")
        assert (result.status, result.evidence, result.value) == (MET, ("Observation/late",), 55)


def test_retracted_fact_is_simply_absent(rules: ProtocolRules) -> None:
    """The mapping stage drops an entered-in-error result; the earlier one decides again."""
    earlier = fact("creatinine", "2025-02-10", 2.0, ref="Observation/c1")
    retracted = fact("creatinine", "2025-02-25", 1.0, ref="Observation/c2")
    assert criterion([earlier, retracted], rules, "creatinine").status is MET
    result = criterion([earlier], rules, "creatinine")
    assert (result.status, result.evidence) == (NOT_MET, ("Observation/c1",))


def test_first_infusion_anchor(rules: ProtocolRules) -> None:
    by_infusion = tuned(rules, "eligibility.screening", anchor="first_infusion")
    facts = [
        fact("lvef", "2025-03-05", 60),
        bag("2025-03-10T10:00+08:00", "2025-03-11T10:00+08:00"),
        bag("2025-03-08T23:30+08:00", None),  # first infusion, late evening local
    ]
    record = eligibility.assess_eligibility(facts, SUBJECT, by_infusion.eligibility, d("2025-05-01"))
    assert (record.anchor, record.anchor_date, record.window_start) == (
        "first_infusion",
        d("2025-03-08"),
        d("2025-02-08"),
    )
    assert record.day_from_transplant == (d("2025-03-08") - d("2025-05-01")).days
    lvef = next(c for c in record.criteria if c.criterion == "lvef")
    assert lvef.status is MET


@pytest.mark.parametrize("anchor", ["enrolment", "first_infusion"])
def test_no_anchor_makes_every_criterion_unknown(rules: ProtocolRules, anchor: str) -> None:
    tuned_rules = tuned(rules, "eligibility.screening", anchor=anchor)
    subject = SUBJECT.model_copy(update={"enrolment_date": None})
    record = eligibility.assess_eligibility(healthy(), subject, tuned_rules.eligibility, None)
    assert (record.anchor_date, record.window_start, record.overall) == (None, None, UNKNOWN)
    assert {(c.status, c.reason) for c in record.criteria} == {(UNKNOWN, "no anchor date")}
    assert record.evidence == ()


def test_overall(rules: ProtocolRules) -> None:
    assert assess(healthy(), rules).overall is MET
    no_ecog = [f for f in healthy() if f.concept != "ecog"]
    assert assess(no_ecog, rules).overall is UNKNOWN
    bad_lvef = [*no_ecog, fact("lvef", "2025-02-28", 45)]
    assert assess(bad_lvef, rules).overall is NOT_MET


def test_record_evidence_collects_the_deciding_facts(rules: ProtocolRules) -> None:
    record = assess(healthy(), rules)
    assert record.evidence == tuple(ref for c in record.criteria for ref in c.evidence)
    assert [c.criterion for c in record.criteria] == [
        "lvef",
        "creatinine",
        "alt",
        "ast",
        "bilirubin_total",
        "spo2",
        "dyspnea_grade",
        "ecog",
    ]


SPO2 = "2025-02-20T10:00+08:00"

SPO2_CASES = [
    # id, facts, status, reason, evidence
    ("flow 0 component", [fact("spo2", SPO2, 95, attributes={"oxygen_flow": "0"})], MET, None, 1),
    ("fio2 21 component", [fact("spo2", SPO2, 95, attributes={"fio2": "21"})], MET, None, 1),
    (
        "flow 2 component",
        [fact("spo2", SPO2, 97, attributes={"oxygen_flow": "2"})],
        UNKNOWN,
        "measured on supplemental oxygen",
        1,
    ),
    (
        "fio2 30 component",
        [fact("spo2", SPO2, 97, attributes={"fio2": "30"})],
        UNKNOWN,
        "measured on supplemental oxygen",
        1,
    ),
    ("no oxygen info", [fact("spo2", SPO2, 97)], UNKNOWN, "oxygen use unknown", 1),
    (
        "unreadable component",
        [fact("spo2", SPO2, 97, attributes={"oxygen_flow": "n/a"})],
        UNKNOWN,
        "oxygen use unknown",
        1,
    ),
    (
        "flow 0 but fio2 40 disagree",
        [fact("spo2", SPO2, 97, attributes={"oxygen_flow": "0", "fio2": "40"})],
        UNKNOWN,
        "oxygen use unknown",
        1,
    ),
    (
        "separate flow 0 exactly 60 min earlier",
        [fact("spo2", SPO2, 95), fact("oxygen_flow", "2025-02-20T09:00+08:00", 0)],
        MET,
        None,
        2,
    ),
    (
        "separate flow 0 61 min later",
        [fact("spo2", SPO2, 95), fact("oxygen_flow", "2025-02-20T11:01+08:00", 0)],
        UNKNOWN,
        "oxygen use unknown",
        1,
    ),
    (
        "separate fio2 21 written in UTC",
        [fact("spo2", SPO2, 95), fact("fio2", "2025-02-20T02:30Z", 21)],
        MET,
        None,
        2,
    ),
    (
        "separate flow 3",
        [fact("spo2", SPO2, 99), fact("oxygen_flow", "2025-02-20T10:05+08:00", 3)],
        UNKNOWN,
        "measured on supplemental oxygen",
        2,
    ),
    (
        "nearest separate flow wins",
        [
            fact("spo2", SPO2, 95),
            fact("oxygen_flow", "2025-02-20T09:10+08:00", 2),
            fact("oxygen_flow", "2025-02-20T09:50+08:00", 0),
        ],
        MET,
        None,
        2,
    ),
    (
        "component beats separate fact",
        [fact("spo2", SPO2, 95, attributes={"oxygen_flow": "0"}), fact("oxygen_flow", SPO2, 2)],
        MET,
        None,
        1,
    ),
    (
        "latest on oxygen, earlier room air decides",
        [
            fact("spo2", "2025-02-10T10:00+08:00", 90, attributes=ON_AIR),
            fact("spo2", SPO2, 99, attributes={"oxygen_flow": "2"}),
        ],
        NOT_MET,
        None,
        1,
    ),
    (
        "room-air reading on the window edge",
        [
            fact("spo2", "2025-02-01T00:00+08:00", 95, attributes=ON_AIR),
            fact("spo2", SPO2, 88),
        ],
        MET,
        None,
        1,
    ),
    ("no reading", [], UNKNOWN, "no value in window", 0),
]


@pytest.mark.parametrize(
    ("facts", "status", "reason", "n_evidence"),
    [case[1:] for case in SPO2_CASES],
    ids=[case[0] for case in SPO2_CASES],
)
def test_spo2_on_room_air(
    rules: ProtocolRules, facts: list[Fact], status: CriterionStatus, reason: str | None, n_evidence: int
) -> None:
    result = criterion(facts, rules, "spo2")
    assert (result.status, result.reason) == (status, reason)
    assert len(result.evidence) == n_evidence
    if n_evidence:
        assert result.evidence[0].startswith("Observation/spo2-")
    if n_evidence == 2:
        assert result.evidence[1].startswith(("Observation/oxygen_flow-", "Observation/fio2-"))
