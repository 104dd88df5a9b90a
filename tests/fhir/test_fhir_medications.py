"""Administrations that name their drug by a Medication reference still map (adapter/fhir/medications.py)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapter import paths
from adapter.fhir.medications import MedicationResolver, external_medication, medication_id
from adapter.fhir.ndjson import NdjsonFolderSource
from adapter.fhir.validation import model_for
from adapter.mapping import catalog, engine
from adapter.mapping.issues import IssueKind

CAT = catalog.load_catalog(paths.default_mappings_dir(), "demo-north")
CTX = engine.SiteContext(
    site="demo-north", timezone=ZoneInfo("UTC"), catalog=CAT, subjects={"Patient/p1": "S-001"}
)
BLINCYTO = {
    "resourceType": "Medication",
    "id": "blin-35",
    "meta": {"versionId": "3"},
    "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1597258"}]},
}


def admin(reference: str = "Medication/blin-35", **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": "m1",
        "status": "completed",
        "medicationReference": {"reference": reference, "display": "Blinatumomab 35 mcg"},
        "subject": {"reference": "Patient/p1"},
        "effectivePeriod": {"start": "2025-03-01T08:00:00Z", "end": "2025-03-02T08:00:00Z"},
        "dosage": {"dose": {"value": 28, "unit": "ug"}},
        **fields,
    }


class Lookups:
    """A fake server lookup that records what it was asked."""

    def __init__(self, *medications: dict[str, Any]) -> None:
        self.medications = {m["id"]: m for m in medications}
        self.asked: list[list[str]] = []

    def __call__(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        self.asked.append(list(ids))
        return [copy.deepcopy(self.medications[i]) for i in ids if i in self.medications]


def mapped(raw: dict[str, Any], validation: str) -> engine.MappingResult:
    model = (
        model_for(raw["resourceType"]) if validation == "lean" else get_fhir_model_class(raw["resourceType"])
    )
    return engine.map_resource(model.model_validate(raw), "v:1", CTX)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Medication/blin-35", "blin-35"),
        ("https://ehr.example/fhir/Medication/blin-35", "blin-35"),
        ("Medication/blin-35/_history/2", "blin-35"),
        ("Substance/x", None),
        ("Medication/", None),
        ("Medication/has space", None),
    ],
)
def test_medication_id_reads_the_common_reference_forms(reference: str, expected: str | None) -> None:
    assert medication_id(reference) == expected


def test_only_outside_references_of_administrations_need_resolving() -> None:
    assert external_medication(admin()) == "blin-35"
    assert external_medication(admin("#local")) is None
    assert external_medication({**admin(), "medicationCodeableConcept": {"text": "x"}}) is None
    assert external_medication({**admin(), "resourceType": "Observation"}) is None


@pytest.mark.parametrize("validation", ["lean", "r4b"])
def test_an_inlined_medication_maps_to_the_study_drug(validation: str) -> None:
    raw = admin()
    assert MedicationResolver(Lookups(BLINCYTO)).inline([raw]) == 1
    assert raw["medicationReference"]["reference"] == "#med-blin-35"
    (inner,) = raw["contained"]
    assert inner["meta"] == {"source": "Medication/blin-35"}  # where the code came from
    (fact,) = mapped(raw, validation).facts
    assert (fact.concept, fact.value, fact.unit) == ("blinatumomab", 28, "ug")


def test_each_medication_is_looked_up_once_per_source_in_one_batch() -> None:
    lookups = Lookups(BLINCYTO)
    resolver = MedicationResolver(lookups)
    page = [admin(), {**admin(), "id": "m2"}, admin("Medication/gone")]
    assert resolver.inline(page) == 2
    assert resolver.inline([admin(), admin("Medication/gone")]) == 1
    assert lookups.asked == [["blin-35", "gone"]]  # neither the known nor the missing one asked again


def test_an_unresolvable_reference_stays_and_becomes_an_issue_naming_it() -> None:
    raw = admin("Medication/gone")
    assert MedicationResolver(Lookups()).inline([raw]) == 0
    assert raw == admin("Medication/gone")
    result = mapped(raw, "lean")
    assert [i.kind for i in result.issues] == [IssueKind.UNKNOWN_CODE]
    assert "Medication/gone" in result.issues[0].detail


def test_a_contained_id_already_taken_is_not_reused() -> None:
    raw = admin(contained=[{"resourceType": "Medication", "id": "med-blin-35", "code": {"text": "other"}}])
    MedicationResolver(Lookups(BLINCYTO)).inline([raw])
    assert [c["id"] for c in raw["contained"]] == ["med-blin-35", "xmed-blin-35"]
    (fact,) = mapped(raw, "lean").facts
    assert fact.concept == "blinatumomab"


def test_medications_the_source_already_holds_need_no_lookup() -> None:
    resolver = MedicationResolver()  # an NDJSON folder: no server to ask
    resolver.add(BLINCYTO)
    raw = admin()
    assert resolver.inline([raw]) == 1


def test_an_ndjson_folder_resolves_references_from_its_medication_files(tmp_path: Path) -> None:
    (tmp_path / "Medication.ndjson").write_bytes(orjson.dumps(BLINCYTO) + b"\n")
    (tmp_path / "MedicationAdministration.ndjson").write_bytes(
        orjson.dumps(admin()) + b"\n" + orjson.dumps(admin("Medication/gone", id="m2")) + b"\n"
    )
    (page,) = NdjsonFolderSource(tmp_path).pages(
        "MedicationAdministration", patient_refs=[], since=None, resume=None
    )
    first, second = (line.resource for line in page.lines)
    assert first["medicationReference"]["reference"] == "#med-blin-35"
    assert second["medicationReference"]["reference"] == "Medication/gone"
