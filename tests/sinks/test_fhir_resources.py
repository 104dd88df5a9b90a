"""Every demo record becomes a valid FHIR resource that says what the record says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapter.sinks import fhir_resources as fr
from adapter.sinks.fhir_resources.records import BUILDERS
from adapter.sinks.fhir_resources.systems import CLINICALTRIALS_GOV, RXNORM

SYSTEMS = fr.Systems("urn:trial-adapter")
RECORDED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def valid(resource: dict[str, Any]) -> None:
    """Structurally valid R4 (the R4B models share these resources' definitions)."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


@pytest.mark.parametrize("base", ["urn:trial-adapter", "https://trials.example.org/fhir"])
def test_every_demo_record_and_its_provenance_are_valid_fhir(
    base: str, demo_records: list[dict[str, Any]]
) -> None:
    systems = fr.Systems(base)
    assert {r["record_type"] for r in demo_records} == set(BUILDERS)
    for record in demo_records:
        for retracted in (False, True):
            resource = fr.record_resource(record, systems, "Patient/p", retracted=retracted)
            valid(resource)
            assert resource["resourceType"] == fr.resource_type_of(record["record_type"])
            assert resource["identifier"] == [{"system": systems.record_id, "value": record["record_id"]}]
            assert (resource["status"] == "entered-in-error") is retracted
            valid(fr.provenance(record, "urn:uuid:r", systems, RECORDED, retracted=retracted))
    for resource in (
        fr.patient("S-1", systems),
        fr.research_study("NCT06507514", systems),
        fr.research_subject("S-1", "urn:uuid:s", "Patient/p", systems),
    ):
        valid(resource)


def test_systems_follow_the_base() -> None:
    assert SYSTEMS.record_id == "urn:trial-adapter:record-id"
    assert SYSTEMS.extension("cycle-number") == "urn:trial-adapter:extension:cycle-number"
    https = fr.Systems("https://trials.example.org/fhir")
    assert https.record_id == "https://trials.example.org/fhir/record-id"
    assert (
        https.extension("cycle-number") == "https://trials.example.org/fhir/StructureDefinition/cycle-number"
    )


def test_eligibility_keeps_every_criterion_with_value_rule_and_date(
    demo_records: list[dict[str, Any]],
) -> None:
    record = next(r for r in demo_records if r["record_type"] == "EligibilityAssessment")
    resource = fr.record_resource(record, SYSTEMS, "Patient/p")
    assert resource["valueCodeableConcept"]["coding"][0]["code"] == record["overall"]
    assert resource["effectivePeriod"] == {"start": record["window_start"], "end": record["anchor_date"]}
    assert len(resource["component"]) == len(record["criteria"])
    for criterion, component in zip(record["criteria"], resource["component"], strict=True):
        assert component["code"]["coding"][0]["code"] == criterion["criterion"]
        assert component["interpretation"][0]["coding"][0]["code"] == criterion["status"]
        assert component["referenceRange"] == [{"text": criterion["rule"]}]
        if criterion["value"] is None:
            assert component["dataAbsentReason"]["coding"][0]["code"] == "unknown"
        else:
            assert component["valueQuantity"]["value"] == criterion["value"]
        if criterion["reason"]:
            assert component["interpretation"][0]["text"] == criterion["reason"]


def test_cycle_transplant_collection_mrd_and_counts(demo_records: list[dict[str, Any]]) -> None:
    def first(record_type: str) -> dict[str, Any]:
        return next(r for r in demo_records if r["record_type"] == record_type)

    cycle = fr.record_resource(first("TreatmentCycle"), SYSTEMS, "Patient/p")
    assert cycle["effectivePeriod"] == {
        "start": first("TreatmentCycle")["start"],
        "end": first("TreatmentCycle")["end"],
    }
    assert cycle["medicationCodeableConcept"]["coding"][0] == {
        "system": RXNORM,
        "code": "1597258",
        "display": "blinatumomab",
    }
    extensions = {e["url"].rsplit(":", 1)[-1]: e for e in cycle["extension"]}
    assert extensions["cycle-number"]["valueInteger"] == first("TreatmentCycle")["number"]
    assert extensions["cycle-phase"]["valueCode"] == first("TreatmentCycle")["phase"]

    transplant = fr.record_resource(first("Transplant"), SYSTEMS, "Patient/p")
    assert transplant["performedDateTime"] == first("Transplant")["day0"]
    assert transplant["code"]["coding"][0]["code"] == "709115004"

    collection = fr.record_resource(first("StemCellCollection"), SYSTEMS, "Patient/p")
    assert collection["performedPeriod"]["start"] == first("StemCellCollection")["first_date"]

    counts = fr.record_resource(first("Reconstitution"), SYSTEMS, "Patient/p")
    assert [c["code"]["coding"][0]["code"] for c in counts["component"]] == ["6690-2", "777-3"]
    assert [c["valueQuantity"]["unit"] for c in counts["component"]] == ["10*9/L", "10*9/L"]

    below = next(r for r in demo_records if r["record_type"] == "MrdResult" and r["comparator"])
    mrd = fr.record_resource(below, SYSTEMS, "Patient/p")
    assert mrd["valueQuantity"]["comparator"] == below["comparator"]

    word = {**below, "value": None, "unit": None, "comparator": None, "result": "negative"}
    negative = fr.record_resource(word, SYSTEMS, "Patient/p")
    valid(negative)
    assert negative["valueCodeableConcept"]["coding"][0]["code"] == "260385009"
    assert "valueQuantity" not in negative and "dataAbsentReason" not in negative


def test_provenance_carries_source_hashes_and_catalog_version(demo_records: list[dict[str, Any]]) -> None:
    record = next(r for r in demo_records if r["record_type"] == "EligibilityAssessment")
    provenance = fr.provenance(record, "urn:uuid:r", SYSTEMS, RECORDED)
    hashes = {e["what"]["identifier"]["value"] for e in provenance["entity"]}
    expected = set(record["evidence"]) | {h for c in record["criteria"] for h in c["evidence"]}
    assert hashes == expected and all(h.startswith("src-") for h in hashes)
    assert provenance["policy"] == [f"urn:trial-adapter:catalog:{record['catalog_version']}"]
    assert provenance["id"] == fr.provenance_id(record["record_id"])
    assert provenance["recorded"] == "2026-01-02T03:04:05.000+00:00"
    retraction = fr.provenance(record, "urn:uuid:r", SYSTEMS, RECORDED, retracted=True)
    assert retraction["activity"]["coding"][0]["code"] == "NULLIFY"


def test_identity_is_stable_and_searchable() -> None:
    assert fr.full_url("Patient", "urn:x", "S-1") == fr.full_url("Patient", "urn:x", "S-1")
    assert fr.full_url("Patient", "urn:x", "S-1") != fr.full_url("ResearchSubject", "urn:x", "S-1")
    fixed = fr.fixed_id("Patient", "urn:x", "S-1")
    assert fixed.startswith("ta-") and len(fixed) <= 64 and fixed == fr.fixed_id("Patient", "urn:x", "S-1")
    assert (
        fr.search_token("urn:trial-adapter:record-id", "a b")
        == "identifier=urn:trial-adapter:record-id|a%20b"
    )
    assert fr.study_identifier("NCT06507514", SYSTEMS) == (CLINICALTRIALS_GOV, "NCT06507514")
    assert fr.study_identifier("LOCAL-1", SYSTEMS) == ("urn:trial-adapter:study-id", "LOCAL-1")


def test_unknown_type_or_broken_record_is_not_expressible(demo_records: list[dict[str, Any]]) -> None:
    with pytest.raises(fr.NotExpressible, match="no FHIR mapping"):
        fr.record_resource({"record_type": "Mystery", "record_id": "x"}, SYSTEMS, "Patient/p")
    broken = {
        k: v for k, v in demo_records[0].items() if k not in ("criteria", "day0", "start", "date", "dates")
    }
    with pytest.raises(fr.NotExpressible, match="cannot express"):
        fr.record_resource(broken, SYSTEMS, "Patient/p")
