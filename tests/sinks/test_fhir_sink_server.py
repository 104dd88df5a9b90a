"""The fhir sink against a real FHIR R4 server on 127.0.0.1 (sekmet-fhir, see tests/fhirserver.py).

Deliver the demo's records, deliver them again (nothing changes), change
one, retract one, and read everything back through FHIR search: what a
trial statistician's FHIR client would see.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from adapter import config as config_mod
from adapter.service import job
from adapter.sinks import fhir_resources as fr
from adapter.sinks import settings
from adapter.sinks.fhir import FhirSink
from adapter.sinks.fhir_resources.records import RESOURCE_TYPES

from .conftest import MakeDelivery
from fhirserver import FhirServer, FhirServerFactory, fhir_server_factory  # noqa: F401
from support import prepare_demo_workdir

RECORD = "urn:trial-adapter:record-id"
SUBJECT = "urn:trial-adapter:subject-id"


def search(server: FhirServer, resource_type: str, **params: str) -> list[dict[str, Any]]:
    """Every match of a search, following ``next`` links."""
    found: list[dict[str, Any]] = []
    url: str | None = f"{server.base_url}/{resource_type}"
    query: dict[str, str] | None = {**params, "_count": "500"}
    while url:
        response = requests.get(url, params=query, timeout=30)
        assert response.status_code == 200, response.text[:500]
        bundle = response.json()
        found += [
            e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"
        ]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        query = None
    return found


def by_record_id(server: FhirServer, resource_type: str, record_id: str) -> dict[str, Any]:
    [resource] = search(server, resource_type, identifier=f"{RECORD}|{record_id}")
    return resource


def content(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without what the server sets (id, meta)."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta")}


def sink_for(server: FhirServer) -> FhirSink:
    return FhirSink(settings.FhirRepository(kind="fhir", url=server.base_url, timeout_seconds=60))


@pytest.fixture(scope="module")
def server(fhir_server_factory: FhirServerFactory) -> FhirServer:  # noqa: F811
    """A server of our own: these tests write to it."""
    return fhir_server_factory()


def test_deliver_redeliver_change_retract_and_read_back(
    server: FhirServer, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    sink = sink_for(server)
    subjects = sorted({r["subject_id"] for r in demo_records})

    # Deliver every demo record.
    results = sink.deliver([make_delivery(r) for r in demo_records])
    assert [r.error for r in results if not r.ok] == []
    expected_types = {
        t: sum(fr.resource_type_of(r["record_type"]) == t for r in demo_records)
        for t in RESOURCE_TYPES.values()
    }
    for resource_type, count in expected_types.items():
        assert len(search(server, resource_type, identifier=f"{RECORD}|")) == count
    assert len(search(server, "ResearchStudy", identifier="https://clinicaltrials.gov|NCT06507514")) == 1
    assert len(search(server, "Patient", identifier=f"{SUBJECT}|")) == len(subjects)
    research_subjects = search(server, "ResearchSubject", identifier=f"{SUBJECT}|")
    assert len(research_subjects) == len(subjects)
    assert all(s["individual"]["reference"].startswith("Patient/") for s in research_subjects)
    snapshot = {
        r["record_id"]: by_record_id(server, fr.resource_type_of(r["record_type"]), r["record_id"])
        for r in demo_records
    }
    cycle = next(r for r in demo_records if r["record_type"] == "TreatmentCycle")
    stored = snapshot[cycle["record_id"]]
    assert stored["effectivePeriod"] == {"start": cycle["start"], "end": cycle["end"]}
    patient = search(server, "Patient", identifier=f"{SUBJECT}|{cycle['subject_id']}")[0]
    assert stored["subject"]["reference"] == f"Patient/{patient['id']}"
    provenance = server.read("Provenance", fr.provenance_id(cycle["record_id"]))
    assert provenance["target"] == [{"reference": f"MedicationAdministration/{stored['id']}"}]
    assert {e["what"]["identifier"]["value"] for e in provenance["entity"]} == set(cycle["evidence"])

    # Deliver again: same resources, same content, nothing new.
    assert all(r.ok for r in sink.deliver([make_delivery(r) for r in demo_records]))
    for record in demo_records:
        again = by_record_id(server, fr.resource_type_of(record["record_type"]), record["record_id"])
        before = snapshot[record["record_id"]]
        assert again["id"] == before["id"] and content(again) == content(before)
    assert len(search(server, "Patient", identifier=f"{SUBJECT}|")) == len(subjects)
    assert len(search(server, "ResearchStudy", identifier="https://clinicaltrials.gov|NCT06507514")) == 1

    # Change one record: updated in place.
    changed = {**cycle, "total_dose_mcg": 999.0, "end": cycle["end"]}
    assert sink.deliver([make_delivery(changed)])[0].ok
    updated = by_record_id(server, "MedicationAdministration", cycle["record_id"])
    assert updated["id"] == stored["id"] and updated["dosage"]["dose"]["value"] == 999.0
    assert (
        len(search(server, "MedicationAdministration", identifier=f"{RECORD}|"))
        == expected_types["MedicationAdministration"]
    )

    # Retract it: still there, marked entered-in-error, its Provenance says NULLIFY.
    assert sink.deliver([make_delivery(changed, "retract")])[0].ok
    retracted = by_record_id(server, "MedicationAdministration", cycle["record_id"])
    assert retracted["id"] == stored["id"] and retracted["status"] == "entered-in-error"
    activity = server.read("Provenance", fr.provenance_id(cycle["record_id"]))["activity"]["coding"][0][
        "code"
    ]
    assert activity == "NULLIFY"
    live = search(server, "MedicationAdministration", identifier=f"{RECORD}|", status="completed")
    assert len(live) == expected_types["MedicationAdministration"] - 1
    # Retracting again changes nothing.
    assert sink.deliver([make_delivery(changed, "retract")])[0].ok
    assert content(by_record_id(server, "MedicationAdministration", cycle["record_id"])) == content(retracted)


def test_the_demo_pipeline_delivers_to_a_fhir_repository_once(
    fhir_server_factory: FhirServerFactory,  # noqa: F811
    tmp_path: Any,
) -> None:
    server = fhir_server_factory()
    demo = prepare_demo_workdir(tmp_path / "demo")
    config = demo.model_copy(
        update={"repository": settings.FhirRepository(kind="fhir", url=server.base_url, timeout_seconds=60)}
    )
    assert isinstance(config, config_mod.Config)
    first = job.run_once(config, config.sites)
    assert first.delivery is not None and first.delivery.failed == 0 and first.delivery.delivered > 0
    observations = search(server, "Observation", identifier=f"{RECORD}|")
    again = job.run_once(config, config.sites)
    assert again.delivery is not None and again.delivery.delivered == 0
    assert len(search(server, "Observation", identifier=f"{RECORD}|")) == len(observations)
