"""Triage of unknown codes: standard codes outside the protocol raise no issue, the rest do."""

from __future__ import annotations

from typing import Any

import pytest
from mapping.test_engine import CAT, EAST_LIS, LOINC, obs, qty, run

from adapter.mapping import discovery, triage
from adapter.mapping.issues import IssueKind

SNOMED = "http://snomed.info/sct"
LOINC_OID = "urn:oid:2.16.840.1.113883.6.1"


def with_code(codeable: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An observation of the engine tests, with ``codeable`` as its code."""
    return {**obs(**fields), "code": codeable}


def coded(system: str, code: str, display: str | None = None, text: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], **({"text": text} if text else {})}


@pytest.mark.parametrize(
    ("code", "display"),
    [
        ("2951-2", "Sodium [Moles/volume] in Serum or Plasma"),
        ("2823-3", "Potassium [Moles/volume] in Serum or Plasma"),
        ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
        ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"),
        ("8867-4", "Heart rate"),
        ("39156-5", "Body mass index (BMI) [Ratio]"),
        ("1968-7", "Bilirubin.direct [Mass/volume] in Serum or Plasma"),
        ("2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma"),
        ("9999-9", None),
    ],
)
def test_an_ordinary_standard_code_is_outside_the_protocol_and_raises_no_issue(
    code: str, display: str | None
) -> None:
    result = run(with_code(coded(LOINC, code, display), valueQuantity=qty(140, "mmol/L")))
    assert result.issues == [] and result.facts == []
    assert result.outside is not None
    assert result.outside.code == f"{LOINC}|{code}"
    assert result.outside.display == (display or "")


def test_an_oid_spelling_of_a_standard_system_is_the_standard_system() -> None:
    result = run(with_code(coded(LOINC_OID, "2951-2", "Sodium")))
    assert result.outside is not None and result.outside.code == f"{LOINC}|2951-2"


@pytest.mark.parametrize(
    "codeable",
    [
        coded(LOINC, "1744-2x", "Alanine aminotransferase [Enzymatic activity/volume] in Body fluid"),
        coded(LOINC, "0000-1", None, text="ALT (GPT)"),
        coded(SNOMED, "123456", "Platelet count"),
    ],
)
def test_a_standard_code_that_looks_like_a_protocol_concept_stays_an_issue(codeable: dict[str, Any]) -> None:
    result = run(with_code(codeable))
    assert result.outside is None
    assert [i.kind for i in result.issues] == [IssueKind.UNKNOWN_CODE]


@pytest.mark.parametrize("display", ["Sodium", None])
def test_every_site_local_code_stays_an_issue(display: str | None) -> None:
    result = run(with_code(coded(EAST_LIS, "NA-1", display)))
    assert result.outside is None
    assert [i.kind for i in result.issues] == [IssueKind.UNKNOWN_CODE]


def test_a_mapped_code_beside_an_unknown_standard_code_still_maps() -> None:
    codeable = {
        "coding": [
            {"system": LOINC, "code": "2951-2", "display": "Sodium"},
            {"system": LOINC, "code": "2160-0"},
        ]
    }
    result = run(with_code(codeable))
    assert result.outside is None and [f.concept for f in result.facts] == ["creatinine"]


def test_discover_sorts_outside_codes_between_unmapped_and_ignored() -> None:
    from adapter.fhir.discover import CodeCount, Discovery

    found = Discovery(site="demo-east", patients_found=1, resources_read=3)
    found.codes = [
        CodeCount("Observation", LOINC, "2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 5),
        CodeCount("Observation", EAST_LIS, "NA-1", "Sodium", "mmol/L", 2),
        CodeCount("Observation", LOINC, "2160-0", "Creatinine", "mg/dL", 9),
    ]
    judged = discovery.judge(found, CAT)
    assert [(c.code, c.status) for c in judged.codes] == [
        ("NA-1", "unmapped"),
        ("2951-2", "outside"),
        ("2160-0", "mapped"),
    ]


def test_the_triage_answer_for_a_display_is_remembered() -> None:
    CAT.triage_memo.clear()
    run(with_code(coded(LOINC, "2951-2", "Sodium [Moles/volume] in Serum or Plasma")))
    assert CAT.triage_memo == {"Sodium [Moles/volume] in Serum or Plasma": False}
    assert triage.outside_protocol(CAT, [], None) is None
