"""The mapping engine: each source shape becomes a fact or its typed issue."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter import paths
from adapter.mapping import catalog, engine
from adapter.mapping.issues import IssueKind

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
EAST_LIS = "http://hospital-east.example/fhir/lis"
CAT = catalog.load_catalog(paths.default_mappings_dir(), "demo-east")
CTX = engine.SiteContext(
    site="demo-east", timezone=ZoneInfo("Asia/Shanghai"), catalog=CAT, subjects={"Patient/p1": "S-001"}
)


def obs(code: str = "2160-0", system: str = LOINC, **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-03-01T23:30:00+08:00",
        "valueQuantity": {"value": 1.2, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    }
    resource.update(fields)
    return {k: v for k, v in resource.items() if v is not None}


def run(raw: dict[str, Any]) -> engine.MappingResult:
    model = get_fhir_model_class(raw["resourceType"]).model_validate(raw)
    return engine.map_resource(model, "v:1", CTX)


def qty(value: float, unit: str | None, code: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit is not None:
        q["unit"] = unit
    if code is not None:
        q["system"], q["code"] = UCUM, code
    return q


@pytest.mark.parametrize(
    ("raw", "concept", "value", "unit"),
    [
        (obs(), "creatinine", 1.2, "mg/dL"),
        (obs(valueQuantity=qty(141.4, "μmol/L", "umol/L")), "creatinine", 1.6, "mg/dL"),
        (obs("0045", EAST_LIS, valueQuantity=qty(88.4, "μmol/L")), "creatinine", 1.0, "mg/dL"),
        (obs("14631-6", valueQuantity=qty(34.2, "umol/L", "umol/L")), "bilirubin_total", 2.0, "mg/dL"),
        (obs("1742-6", valueQuantity=qty(45, "IU/L")), "alt", 45.0, "U/L"),
        (obs("6690-2", valueQuantity=qty(5.2, "K/uL")), "wbc", 5.2, "10*9/L"),
        (obs("0101", EAST_LIS, valueQuantity=qty(3.1, "×10^9/L")), "wbc", 3.1, "10*9/L"),
        (obs("777-3", valueQuantity=qty(52000, "/uL", "/uL")), "platelets", 52.0, "10*9/L"),
        (obs("10230-1", valueQuantity=qty(0.55, None, "1")), "lvef", 55.0, "%"),
        (obs("59408-5", valueQuantity=qty(97, "%", "%")), "spo2", 97.0, "%"),
        (obs("89247-1", valueQuantity=None, valueInteger=1), "ecog", 1.0, "{score}"),
        (
            obs(
                "89247-1",
                valueQuantity=None,
                valueCodeableConcept={"coding": [{"system": LOINC, "code": "LA9622-7"}]},
            ),
            "ecog",
            0.0,
            "{score}",
        ),
    ],
)
def test_values_map_to_canonical_units(raw: dict[str, Any], concept: str, value: float, unit: str) -> None:
    result = run(raw)
    assert result.issues == []
    (fact,) = result.facts
    assert (fact.concept, fact.unit, fact.subject_id) == (concept, unit, "S-001")
    assert fact.value == pytest.approx(value, rel=2e-3)
    assert fact.local_date == dt.date(2025, 3, 1)  # 23:30 local stays on its local day
    assert fact.source_ref == "Observation/o1" and fact.source_version == "v:1"
    assert fact.catalog_version == CAT.version


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (obs(status="preliminary"), IssueKind.NOT_FINAL),
        (obs(valueQuantity=qty(1.2, None)), IssueKind.UNKNOWN_UNIT),
        (obs(valueQuantity=qty(1.2, "furlongs")), IssueKind.UNKNOWN_UNIT),
        (obs(valueQuantity=qty(1.2, "10*9/L", "10*9/L")), IssueKind.UNIT_NOT_CONVERTIBLE),
        (obs(valueQuantity=qty(880, "mg/dL", "mg/dL")), IssueKind.IMPLAUSIBLE_VALUE),
        (obs(valueQuantity=None, dataAbsentReason={"text": "clotted"}), IssueKind.MISSING_VALUE),
        (obs(valueQuantity=None, valueString="see report"), IssueKind.MISSING_VALUE),
        (obs(effectiveDateTime=None), IssueKind.MISSING_TIME),
        (obs(effectiveDateTime="2025-03"), IssueKind.MISSING_TIME),
        (obs("9999-9", EAST_LIS), IssueKind.UNKNOWN_CODE),
        (obs(subject={"reference": "Patient/stranger"}), IssueKind.PATIENT_NOT_ON_ROSTER),
        (obs(subject=None), IssueKind.UNKNOWN_SUBJECT),
        (
            {
                **obs(),
                "code": {
                    "coding": [{"system": LOINC, "code": "2160-0"}, {"system": LOINC, "code": "1742-6"}]
                },
            },
            IssueKind.AMBIGUOUS_MATCH,
        ),
    ],
)
def test_problems_become_typed_issues(raw: dict[str, Any], kind: IssueKind) -> None:
    result = run(raw)
    assert result.facts == []
    assert [i.kind for i in result.issues] == [kind]
    assert result.issues[0].detail


def test_unknown_code_issue_is_scoped_to_the_code() -> None:
    (issue,) = run(obs("0099", EAST_LIS)).issues
    assert issue.scope == f"code:{EAST_LIS}|0099"
    assert issue.source_refs == ("Observation/o1",)


def test_off_roster_patient_is_one_issue_per_patient() -> None:
    (issue,) = run(obs(subject={"reference": "Patient/stranger"})).issues
    assert issue.scope == "patient:Patient/stranger"
    assert issue.source_refs == ("Observation/o1",)


def test_comparator_and_reference_high_are_kept() -> None:
    raw = obs(
        "1742-6",
        valueQuantity={"value": 30, "comparator": "<", "unit": "U/L"},
        referenceRange=[{"high": {"value": 0.67, "unit": "ukat/L"}}],
    )
    (fact,) = run(raw).facts
    assert fact.comparator == "<"
    assert fact.reference_high == pytest.approx(40.2)


def test_oxygen_component_becomes_an_attribute() -> None:
    raw = obs(
        "59408-5",
        valueQuantity=qty(95, "%", "%"),
        component=[
            {"code": {"coding": [{"system": LOINC, "code": "3151-8"}]}, "valueQuantity": qty(0, "L/min")}
        ],
    )
    (fact,) = run(raw).facts
    assert fact.attributes == {"oxygen_flow": "0"}


def admin(**fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationAdministration",
        "id": "m1",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "L01XC19"}]},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2025-03-01T08:00:00+08:00", "end": "2025-03-03T08:00:00+08:00"},
        "dosage": {"dose": {"value": 0.056, "unit": "mg"}},
    }
    resource.update(fields)
    return {k: v for k, v in resource.items() if v is not None}


def test_study_drug_bag_becomes_a_dosed_fact() -> None:
    (fact,) = run(admin()).facts
    assert (fact.concept, fact.value, fact.unit) == ("blinatumomab", pytest.approx(56.0), "ug")
    assert fact.local_end_date == dt.date(2025, 3, 3)


def test_study_drug_named_only_by_text_is_an_issue() -> None:
    result = run(admin(medicationCodeableConcept={"text": "贝林妥欧单抗 35ug"}))
    assert [i.kind for i in result.issues] == [IssueKind.STUDY_DRUG_TEXT_ONLY]


def test_unreadable_dose_keeps_the_infusion_and_raises_the_unit() -> None:
    result = run(admin(dosage={"dose": {"value": 3, "unit": "vials"}}))
    (fact,) = result.facts
    assert fact.value is None
    assert [i.kind for i in result.issues] == [IssueKind.UNKNOWN_UNIT]


def test_administration_of_unknown_status_is_not_counted() -> None:
    result = run(admin(status="unknown"))
    assert result.facts == [] and [i.kind for i in result.issues] == [IssueKind.NOT_FINAL]


def test_procedure_maps_with_its_period_start() -> None:
    raw = {
        "resourceType": "Procedure",
        "id": "p9",
        "status": "completed",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-9-cm", "code": "41.04"}]},
        "subject": {"reference": "Patient/p1"},
        "performedPeriod": {"start": "2025-04-01T09:00:00+08:00"},
    }
    (fact,) = run(raw).facts
    assert (fact.concept, fact.local_date) == ("auto_hsct", dt.date(2025, 4, 1))


@settings(max_examples=150, deadline=None)
@given(
    value=st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)),
    unit=st.sampled_from([None, "mg/dL", "umol/L", "μmol/L", "K/uL", "%", "bananas", "", "mmol/L"]),
    code=st.sampled_from(["2160-0", "14682-9", "6690-2", "10230-1", "0000-0", "89247-1"]),
    status=st.sampled_from(["final", "preliminary", "amended", "cancelled"]),
    when=st.sampled_from([None, "2025-01-01", "2025-01-01T00:00:00Z", "2025"]),
)
def test_every_observation_yields_a_fact_an_issue_or_its_code_outside_the_protocol(
    value: float | None, unit: str | None, code: str, status: str, when: str | None
) -> None:
    quantity = None if value is None else {"value": value, **({"unit": unit} if unit else {})}
    result = run(obs(code, status=status, effectiveDateTime=when, valueQuantity=quantity))
    assert result.facts or result.issues or (result.outside and result.outside.code == f"{LOINC}|{code}")
    assert not (result.outside and (result.facts or result.issues)), "outside means nothing else"
    for fact in result.facts:
        concept = CAT.concepts[fact.concept]
        low, high = concept.spec.plausible or (float("-inf"), float("inf"))
        assert fact.value is not None and low <= fact.value <= high


@pytest.mark.parametrize(
    ("raw", "concept"),
    [
        (obs("L03AA02", "http://www.whocc.no/atc"), "mobilization"),  # a drug's code on an Observation
        (admin(medicationCodeableConcept={"coding": [{"system": LOINC, "code": "2160-0"}]}), "creatinine"),
    ],
)
def test_a_code_of_another_kind_of_concept_is_an_issue_not_a_crash(raw: dict[str, Any], concept: str) -> None:
    result = run(raw)
    assert result.facts == []
    (issue,) = result.issues
    assert (issue.kind, issue.concept) == (IssueKind.WRONG_RESOURCE_TYPE, concept)


def test_every_issue_kind_says_what_usually_resolves_it() -> None:
    from adapter.mapping.issues import GUIDANCE

    assert set(GUIDANCE) == set(IssueKind)
    assert all(len(text) > 40 for text in GUIDANCE.values())


@pytest.mark.parametrize(
    ("text", "value", "comparator"),
    [
        ("<0.01 %", 0.01, "<"),
        ("1.2E-3 %", 0.0012, None),  # scientific notation
        ("0,01 %", 0.01, None),  # a decimal comma (European LIS)
        ("< 1,5 %", 1.5, "<"),
        (".5 %", 0.5, None),
    ],
)
def test_numbers_written_as_text_are_read_as_labs_send_them(
    text: str, value: float, comparator: str | None
) -> None:
    (fact,) = run(obs("6690-2", valueQuantity=None, valueString=text.replace("%", "10*9/L"))).facts
    assert (fact.value, fact.comparator) == (pytest.approx(value), comparator)


@pytest.mark.parametrize("text", ["1,200 10*9/L", "1.2.3 10*9/L", "negative"])
def test_text_that_is_no_clear_number_is_an_issue_not_a_guess(text: str) -> None:
    result = run(obs("6690-2", valueQuantity=None, valueString=text))
    assert result.facts == [] and [i.kind for i in result.issues] == [IssueKind.MISSING_VALUE]
