"""The fhir sink's transaction Bundles, checked against the R4 rules with HTTP mocked.

The same sink runs against a real FHIR server in test_fhir_sink_server.py;
here the Bundle's shape and the failure handling are pinned down one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
import responses
from fhir.resources.R4B import get_fhir_model_class

from adapter.sinks import fhir_resources as fr
from adapter.sinks import settings
from adapter.sinks.base import Delivery
from adapter.sinks.fhir import FhirSink
from adapter.sinks.fhir_resources.systems import CLINICALTRIALS_GOV

from .conftest import MakeDelivery

BASE = "https://repo.example.org/fhir"
RECORD_SYSTEM = "urn:trial-adapter:record-id"


def fhir_sink(**overrides: Any) -> FhirSink:
    raw: dict[str, Any] = {"kind": "fhir", "url": BASE}
    raw.update(overrides)
    return FhirSink(settings.FhirRepository.model_validate(raw))


def transaction_response(bundle: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [{"response": {"status": "200 OK"}} for _ in bundle["entry"]],
    }


@pytest.fixture
def server() -> Iterator[list[dict[str, Any]]]:
    """A mocked FHIR endpoint that checks every Bundle it gets and records it."""
    received: list[dict[str, Any]] = []

    def accept(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        bundle = orjson.loads(request.body or b"")
        check_transaction(bundle)
        received.append(bundle)
        return (
            200,
            {"Content-Type": "application/fhir+json"},
            orjson.dumps(transaction_response(bundle)).decode(),
        )

    with responses.RequestsMock() as mock:
        mock.add_callback(responses.POST, BASE, callback=accept)
        yield received


def check_transaction(bundle: dict[str, Any]) -> None:
    """What https://hl7.org/fhir/R4/http.html#transaction asks of a client's Bundle."""
    get_fhir_model_class("Bundle").model_validate(bundle)
    assert bundle["type"] == "transaction"
    full_urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(full_urls) == len(set(full_urls)), "one resource touched twice"
    for entry in bundle["entry"]:
        for reference in references(entry["resource"]):
            if reference.startswith("urn:uuid:"):
                assert reference in full_urls, f"unresolvable reference {reference}"


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def subject_batch(demo_records: list[dict[str, Any]], make_delivery: MakeDelivery) -> list[Delivery]:
    subject = demo_records[0]["subject_id"]
    return [make_delivery(r) for r in demo_records if r["subject_id"] == subject]


def test_one_transaction_with_conditional_updates_fixed_anchors_and_provenance(
    server: list[dict[str, Any]], demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    batch = subject_batch(demo_records, make_delivery)
    results = fhir_sink().deliver(batch)
    assert all(r.ok for r in results) and len(results) == len(batch)
    [bundle] = server
    requests_made = [(e["request"]["method"], e["request"]["url"]) for e in bundle["entry"]]
    subject = batch[0].subject_id
    study_id = fr.fixed_id("ResearchStudy", CLINICALTRIALS_GOV, "NCT06507514")
    patient_id = fr.fixed_id("Patient", "urn:trial-adapter:subject-id", subject)
    subject_id = fr.fixed_id("ResearchSubject", "urn:trial-adapter:subject-id", subject)
    assert requests_made[:3] == [
        ("PUT", f"ResearchStudy/{study_id}"),
        ("PUT", f"Patient/{patient_id}"),
        ("PUT", f"ResearchSubject/{subject_id}"),
    ]
    research_subject = bundle["entry"][2]["resource"]
    assert research_subject["study"] == {"reference": f"ResearchStudy/{study_id}"}
    assert research_subject["individual"] == {"reference": f"Patient/{patient_id}"}
    records = requests_made[3::2]
    provenances = requests_made[4::2]
    assert [url for _, url in records] == [
        f"{fr.resource_type_of(d.record_type)}?identifier={RECORD_SYSTEM}|{d.record_id}" for d in batch
    ]
    assert {method for method, _ in records} == {"PUT"}
    assert provenances == [("PUT", f"Provenance/{fr.provenance_id(d.record_id)}") for d in batch]
    patient = bundle["entry"][1]["resource"]
    assert patient == {"id": patient_id, **fr.patient(subject, fr.Systems("urn:trial-adapter"))}
    assert all(
        e["resource"]["subject"] == {"reference": f"Patient/{patient_id}"} for e in bundle["entry"][3::2]
    )
    assert all(
        e["resource"]["target"] == [{"reference": e_record["fullUrl"]}]
        for e_record, e in zip(bundle["entry"][3::2], bundle["entry"][4::2], strict=True)
    )


def test_redelivery_sends_the_same_bytes_and_anchors_once_per_sink(
    server: list[dict[str, Any]], demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    batch = subject_batch(demo_records, make_delivery)
    fhir_sink().deliver(batch)
    fhir_sink().deliver(batch)  # the next drain: a new sink
    assert server[0] == server[1]
    sink = fhir_sink()
    sink.deliver(batch)
    sink.deliver(batch)  # the same drain, again: the subject's resources are known to be there
    assert server[3]["entry"] == server[2]["entry"][3:]


def test_a_records_changes_in_one_batch_collapse_to_the_last(
    server: list[dict[str, Any]], demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    record = demo_records[0]
    changed = {**record, "overall": "not_met"}
    batch = [make_delivery(record), make_delivery(changed), make_delivery(changed, "retract")]
    results = fhir_sink().deliver(batch)
    assert [r.ok for r in results] == [True, True, True]
    [bundle] = server
    [observation] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert observation["status"] == "entered-in-error"
    assert observation["valueCodeableConcept"]["coding"][0]["code"] == "not_met"


def test_retraction_without_the_withdrawn_record_fails_and_holds_its_subject(
    server: list[dict[str, Any]], demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    first, other = (
        demo_records[0],
        next(r for r in demo_records if r["subject_id"] != demo_records[0]["subject_id"]),
    )
    bare = make_delivery(first, "retract")
    bare = Delivery(**{**bare.__dict__, "previous": None})
    later = make_delivery(
        next(r for r in demo_records if r["subject_id"] == first["subject_id"] and r is not first)
    )
    elsewhere = make_delivery(other)
    results = {r.item_id: r for r in fhir_sink().deliver([bare, later, elsewhere])}
    assert not results[bare.item_id].ok and "without the withdrawn record" in (
        results[bare.item_id].error or ""
    )
    assert later.item_id not in results  # waits behind the failed retraction
    assert results[elsewhere.item_id].ok


def test_bundles_respect_the_size_limit_without_splitting_a_subject(
    server: list[dict[str, Any]], demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    batch = [make_delivery(r) for r in demo_records]
    results = fhir_sink(max_bundle_entries=40).deliver(batch)
    assert all(r.ok for r in results) and len(results) == len(batch)
    assert len(server) > 1
    subjects_seen: list[set[str]] = []
    for bundle in server:
        subjects = {
            e["resource"]["identifier"][0]["value"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Patient"
        }
        subjects_seen.append(subjects)
        assert len(bundle["entry"]) <= 40 or len(subjects) == 1
    flat = [s for group in subjects_seen for s in group]
    assert len(flat) == len(set(flat)), "a subject was split across Bundles"


@responses.activate
def test_a_rejected_bundle_is_retried_per_subject_to_isolate_the_culprit(
    demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    subjects = sorted({r["subject_id"] for r in demo_records})[:3]
    bad = subjects[1]
    batch = [make_delivery(r) for r in demo_records if r["subject_id"] in subjects]

    def judge(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        bundle = orjson.loads(request.body or b"")
        if any(e["resource"].get("identifier", [{}])[0].get("value") == bad for e in bundle["entry"]):
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "invalid",
                        "diagnostics": "Observation.component[3]: bad unit",
                    }
                ],
            }
            return 422, {}, orjson.dumps(outcome).decode()
        return 200, {}, orjson.dumps(transaction_response(bundle)).decode()

    responses.add_callback(responses.POST, BASE, callback=judge)
    results = fhir_sink().deliver(batch)
    assert len(responses.calls) == 1 + len(subjects)
    ok = {r.item_id: r.ok for r in results}
    assert set(ok) == {item.item_id for item in batch}
    by_subject: dict[str, set[bool]] = {}
    for item in batch:
        by_subject.setdefault(item.subject_id, set()).add(ok[item.item_id])
    assert by_subject[bad] == {False}
    assert all(by_subject[s] == {True} for s in subjects if s != bad)
    error = next(r.error for r in results if not r.ok)
    assert error is not None and "422" in error and "bad unit" in error


@responses.activate
@pytest.mark.parametrize("status", [500, 503, 429, 401])
def test_an_outage_fails_the_bundle_and_stops(
    status: int, demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    responses.post(
        BASE,
        status=status,
        json={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "fatal", "code": "transient", "diagnostics": "database locked"}],
        },
    )
    batch = [make_delivery(r) for r in demo_records]
    results = fhir_sink(max_bundle_entries=40).deliver(batch)
    assert len(responses.calls) == 1
    assert results and all(r.outage and not r.ok for r in results)
    assert "database locked" in (results[0].error or "")


@responses.activate
def test_a_response_that_is_not_a_full_transaction_response_is_a_failure(
    demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})
    results = fhir_sink().deliver([make_delivery(demo_records[0])])
    assert not results[0].ok and "unexpected entry statuses" in (results[0].error or "")


def test_preview_is_the_bundle_without_sending(
    demo_records: list[dict[str, Any]], make_delivery: MakeDelivery
) -> None:
    batch = [make_delivery(demo_records[0])]
    [plan] = fhir_sink(auth={"kind": "bearer", "token_env": "UNSET_TOKEN_FOR_TEST"}).preview(batch)
    assert plan.method == "POST" and plan.target == BASE and plan.item_ids == (batch[0].item_id,)
    check_transaction(plan.body)
