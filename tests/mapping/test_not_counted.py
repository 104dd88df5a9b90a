"""Doses not given, procedures not done, entries in error: no issue, no fact that counts (issue 17)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter import paths
from adapter.fhir import stored_form
from adapter.mapping import catalog, engine
from adapter.mapping.issues import IssueKind
from adapter.mapping.not_counted import NotCounted, describe

SHANGHAI = ZoneInfo("Asia/Shanghai")
CAT = catalog.load_catalog(paths.default_mappings_dir(), "demo-east")
CTX = engine.SiteContext(site="demo-east", timezone=SHANGHAI, catalog=CAT, subjects={"Patient/p1": "S-001"})
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
HSCT = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-9-cm", "code": "41.04"}]}


def observation(**fields: Any) -> dict[str, Any]:
    return _without_none(
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "2160-0"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2025-03-01T23:30:00+08:00",
            "valueQuantity": {"value": 1.2, "unit": "mg/dL"},
            **fields,
        }
    )


def administration(**fields: Any) -> dict[str, Any]:
    return _without_none(
        {
            "resourceType": "MedicationAdministration",
            "id": "m1",
            "status": "completed",
            "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "L01XC19"}]},
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2025-03-01T08:00:00+08:00", "end": "2025-03-03T08:00:00+08:00"},
            "dosage": {"dose": {"value": 0.056, "unit": "mg"}},
            **fields,
        }
    )


def procedure(**fields: Any) -> dict[str, Any]:
    return _without_none(
        {
            "resourceType": "Procedure",
            "id": "p1",
            "status": "completed",
            "code": HSCT,
            "subject": {"reference": "Patient/p1"},
            "performedDateTime": "2025-04-01T09:00:00+08:00",
            **fields,
        }
    )


def _without_none(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if v is not None}


def run(raw: dict[str, Any]) -> engine.MappingResult:
    model = get_fhir_model_class(raw["resourceType"]).model_validate(raw)
    return engine.map_resource(model, "v:1", CTX)


def test_a_dose_not_given_is_kept_as_a_fact_that_never_happened() -> None:
    result = run(administration(status="not-done", statusReason=[{"text": "pump occlusion"}]))
    assert result.issues == [] and result.not_counted is NotCounted.NOT_GIVEN
    (fact,) = result.facts
    assert (fact.concept, fact.status, fact.value, fact.happened) == ("blinatumomab", "not-done", None, False)
    assert (fact.local_date, fact.local_end_date) == (dt.date(2025, 3, 1), dt.date(2025, 3, 3))


@pytest.mark.parametrize(
    "fields",
    [
        {"effectivePeriod": None, "effectiveDateTime": "2025-03"},  # coarser than a day (R4 requires one)
        {"effectivePeriod": {"end": "2025-03-03T08:00:00+08:00"}},  # no start
        {"dosage": {"dose": {"value": 3, "unit": "vials"}}},  # a dose unit nobody can read
    ],
)
def test_a_dose_not_given_raises_nothing_whatever_else_is_missing(fields: dict[str, Any]) -> None:
    result = run(administration(status="not-done", **fields))
    assert result.issues == [] and result.not_counted is NotCounted.NOT_GIVEN
    assert all(not fact.happened and fact.value is None for fact in result.facts)


def test_a_procedure_not_done_is_no_event_and_no_issue() -> None:
    result = run(procedure(status="not-done"))
    assert (result.facts, result.issues, result.not_counted) == ([], [], NotCounted.NOT_DONE)


@pytest.mark.parametrize(
    "raw",
    [
        observation(status="entered-in-error"),
        observation(status="entered-in-error", effectiveDateTime=None, valueQuantity=None),
        administration(status="entered-in-error"),
        administration(
            status="entered-in-error", effectivePeriod=None, effectiveDateTime="2025", dosage=None
        ),
        procedure(status="entered-in-error"),
        procedure(status="entered-in-error", performedDateTime=None),
    ],
)
def test_an_entry_in_error_is_withdrawn_without_facts_or_issues(raw: dict[str, Any]) -> None:
    result = run(raw)
    assert (result.facts, result.issues, result.not_counted) == ([], [], NotCounted.WITHDRAWN)


@pytest.mark.parametrize(
    "code",
    [
        {"coding": [{"system": "http://hospital-east.example/fhir/lis", "code": "NOPE"}]},  # unknown code
        {"text": "free text only"},
        {"coding": [{"system": LOINC, "code": "2160-0"}, {"system": LOINC, "code": "6690-2"}]},  # ambiguous
    ],
)
def test_an_entry_in_error_with_a_code_nobody_mapped_asks_for_nothing(code: dict[str, Any]) -> None:
    result = run(observation(status="entered-in-error", code=code))
    assert (result.facts, result.issues, result.not_counted) == ([], [], None)
    assert result.ignored


def test_an_entry_in_error_of_a_patient_off_the_roster_is_still_about_the_roster() -> None:
    """Roster first: nothing of a non-enrolled patient's resource is looked at, not even its status."""
    result = run(observation(status="entered-in-error", subject={"reference": "Patient/elsewhere"}))
    assert [i.kind for i in result.issues] == [IssueKind.PATIENT_NOT_ON_ROSTER]


@pytest.mark.parametrize(
    "raw",
    [
        observation(status="preliminary"),
        observation(status="cancelled"),
        administration(status="unknown"),
        procedure(status="preparation"),
        procedure(status="stopped"),
    ],
)
def test_statuses_that_may_still_change_raise_not_final(raw: dict[str, Any]) -> None:
    result = run(raw)
    assert result.facts == [] and [i.kind for i in result.issues] == [IssueKind.NOT_FINAL]
    assert result.not_counted is None


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["observation", "administration", "procedure"]),
    status=st.sampled_from(
        ["final", "completed", "in-progress", "preliminary", "not-done", "entered-in-error", "unknown"]
    ),
    timed=st.booleans(),
)
def test_a_resource_is_counted_or_not_never_both_and_never_lost(kind: str, status: str, timed: bool) -> None:
    untimed = {
        "observation": {"effectiveDateTime": None},
        "administration": {"effectivePeriod": None},
        "procedure": {"performedDateTime": None},
    }[kind]
    build = {"observation": observation, "administration": administration, "procedure": procedure}[kind]
    try:
        result = run(build(status=status, **({} if timed else untimed)))
    except ValueError:
        return  # a status the resource type does not have is refused by the R4B model
    assert result.facts or result.issues or result.ignored or result.not_counted, "nothing vanishes"
    if result.not_counted is not None:
        assert result.issues == [] and all(not fact.happened for fact in result.facts)
    else:
        assert all(fact.happened for fact in result.facts)


@pytest.mark.parametrize(
    ("raw", "concept", "day"),
    [
        (observation(status="entered-in-error"), "creatinine", dt.date(2025, 3, 1)),
        (observation(effectiveDateTime="2025-03-01T20:00:00Z"), "creatinine", dt.date(2025, 3, 2)),
        (administration(status="not-done"), "blinatumomab", dt.date(2025, 3, 1)),
        (procedure(status="not-done"), "auto_hsct", dt.date(2025, 4, 1)),
        (
            procedure(performedDateTime=None, performedPeriod={"start": "2025-04-02"}),
            "auto_hsct",
            dt.date(2025, 4, 2),
        ),
        (observation(effectiveDateTime="2025-03"), "creatinine", None),
        (observation(code={"coding": [{"system": LOINC, "code": "0000-0"}]}), None, dt.date(2025, 3, 1)),
        (
            administration(
                medicationCodeableConcept=None,
                medicationReference={"reference": "#med"},
                contained=[
                    {
                        "resourceType": "Medication",
                        "id": "med",
                        "code": {"coding": [{"system": ATC, "code": "L01XC19"}]},
                    }
                ],
            ),
            "blinatumomab",
            dt.date(2025, 3, 1),
        ),
    ],
)
def test_the_history_reads_concept_and_local_day_from_the_stored_form(
    raw: dict[str, Any], concept: str | None, day: dt.date | None
) -> None:
    described = describe(stored_form.for_storage(raw), CAT, SHANGHAI)
    assert (described.concept, described.day) == (concept, day)
