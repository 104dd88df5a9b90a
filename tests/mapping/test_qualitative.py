"""Results reported as a word ("MRD negative") become facts without a value, never a guessed number."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapter import paths
from adapter.fhir.validation import model_for
from adapter.mapping import catalog, engine
from adapter.mapping.issues import IssueKind

LAB = "http://hospital-north.example/fhir/lab"
SCT = "http://snomed.info/sct"
CTX = engine.SiteContext(
    site="demo-north",
    timezone=ZoneInfo("UTC"),
    catalog=catalog.load_catalog(paths.default_mappings_dir(), "demo-north"),
    subjects={"Patient/p1": "S-001"},
)


def mrd(code: str = "BALLM", **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LAB, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-09-01T10:00:00Z",
        **value,
    }


def run(raw: dict[str, Any]) -> engine.MappingResult:
    return engine.map_resource(model_for("Observation").model_validate(raw), "v:1", CTX)


@pytest.mark.parametrize(
    ("value", "result"),
    [
        ({"valueString": "Negative"}, "negative"),
        ({"valueString": "negative (<0.01 %)"}, "negative"),
        ({"valueString": "Not detected."}, "negative"),  # never read as "detected"
        ({"valueString": "未检出"}, "negative"),
        ({"valueString": "DETECTED"}, "positive"),
        ({"valueCodeableConcept": {"coding": [{"system": SCT, "code": "260385009"}]}}, "negative"),
        ({"valueCodeableConcept": {"coding": [{"system": SCT, "code": "10828004"}]}}, "positive"),
        ({"valueCodeableConcept": {"text": "MRD negative"}}, "negative"),
    ],
)
def test_a_word_result_is_a_fact_with_its_result(value: dict[str, Any], result: str) -> None:
    for code in ("BALLM", "CLONOSEQ"):  # flow cytometry and NGS
        (fact,) = run(mrd(code, **value)).facts
        assert (fact.value, fact.unit, fact.attributes) == (None, None, {"result": result})
        assert fact.original_value


@pytest.mark.parametrize(
    "value",
    [
        {"valueString": "negative control failed"},  # more words than the phrase
        {"valueString": "see report"},
        {"valueCodeableConcept": {"coding": [{"system": SCT, "code": "1234567"}]}},
    ],
)
def test_other_words_stay_issues(value: dict[str, Any]) -> None:
    result = run(mrd(**value))
    assert result.facts == [] and [i.kind for i in result.issues] == [IssueKind.MISSING_VALUE]


def test_a_number_always_wins_and_other_labs_take_no_words() -> None:
    (fact,) = run(mrd(valueString="<0.01 %")).facts
    assert (fact.value, fact.comparator, fact.attributes) == (0.01, "<", {})
    creatinine = mrd(valueString="negative")
    creatinine["code"] = {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]}
    assert [i.kind for i in run(creatinine).issues] == [IssueKind.MISSING_VALUE]
