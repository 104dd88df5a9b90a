"""Unit tests for adapter.fhir.verify: each search result must fit its search; next links keep it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import responses

from adapter import errors
from adapter.fhir import bundles, http, settings, verify

from fhirtesting import BASE

LOINC = "http://loinc.org"
OBSERVATION_SEARCH = {
    "patient": "a,b\\,c",
    "code": f"{LOINC}|2160-0,{LOINC}|1742-6",
    "category": "laboratory",
    "_lastUpdated": "gt2025-06-01T10:00:00.000Z",
    "_count": "50",
}


def observation(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "subject": {"reference": "Patient/a"},
        "code": {"coding": [{"system": LOINC, "code": "2160-0"}]},
        "category": [{"coding": [{"code": "laboratory"}]}],
        "meta": {"lastUpdated": "2025-06-01T10:00:01Z"},
    }
    resource.update(changes)
    return resource


def fault_of(resource: dict[str, Any], search: dict[str, str] = OBSERVATION_SEARCH) -> str | None:
    try:
        verify.check(verify.Expected.of_search("Observation", search), resource, "Observation search")
    except errors.ServerFault as fault:
        assert fault.exit_code == errors.EXIT_SERVER_FAULT
        assert "Patient/" not in str(fault) and "b,c" not in str(fault)  # names no patient
        return fault.fault
    return None


def test_the_search_is_read_from_its_own_parameters_escapes_included() -> None:
    expected = verify.Expected.of_search("Observation", OBSERVATION_SEARCH)
    assert expected.patients == {"Patient/a", "Patient/b,c"}
    assert expected.codes == {(LOINC, "2160-0"), (LOINC, "1742-6")}
    assert expected.categories == {"laboratory"}
    assert expected.since == dt.datetime(2025, 6, 1, 10, tzinfo=dt.UTC)
    assert verify.Expected.of_search("Observation", {"_count": "5"}) == verify.Expected("Observation")


def test_a_result_that_fits_passes_and_one_of_an_escaped_patient_too() -> None:
    assert fault_of(observation()) is None
    assert fault_of(observation(subject={"reference": "https://ehr/fhir/Patient/b,c/_history/2"})) is None
    assert fault_of(observation(meta={})) is None  # no lastUpdated: nothing to compare


@pytest.mark.parametrize(
    ("changes", "fault"),
    [
        ({"resourceType": "Procedure"}, "wrong_type"),
        ({"subject": {"reference": "Patient/z"}}, "unasked_patient"),
        ({"subject": None}, "unasked_patient"),
        ({"code": {"coding": [{"system": LOINC, "code": "2951-2"}]}}, "unasked_code"),
        ({"code": {"coding": [{"system": "http://other", "code": "2160-0"}]}}, "unasked_code"),
        ({"category": [{"coding": [{"code": "vital-signs"}]}]}, "unasked_category"),
        ({"meta": {"lastUpdated": "2025-06-01T10:00:00Z"}}, "last_updated_ignored"),
        ({"meta": {"lastUpdated": "2024-01-01T00:00:00+02:00"}}, "last_updated_ignored"),
    ],
)
def test_each_way_a_result_can_miss_its_search_is_a_fault(changes: dict[str, Any], fault: str) -> None:
    assert fault_of(observation(**changes)) == fault


def test_ids_searched_by_id_must_be_the_asked_ones() -> None:
    expected = verify.Expected.of_search("Medication", {"_id": "m1,m2"})
    verify.check(expected, {"resourceType": "Medication", "id": "m2"}, "Medication search")
    with pytest.raises(errors.ServerFault, match="ignored the _id parameter"):
        verify.check(expected, {"resourceType": "Medication", "id": "m3"}, "Medication search")


def test_a_patient_search_keeps_only_patients_with_a_searched_identifier() -> None:
    expected = verify.Expected.of_search("Patient", {"identifier": "urn:mrn|1,urn:mrn|2"})
    assert verify.asked_patient(expected, {"identifier": [{"system": "urn:mrn", "value": "2"}]})
    assert not verify.asked_patient(expected, {"identifier": [{"system": "urn:other", "value": "2"}]})
    assert not verify.asked_patient(expected, {"identifier": "junk"})


def test_next_links_that_lost_the_search_are_found_and_repaired() -> None:
    sent = {"patient": "a,b", "code": f"{LOINC}|2160-0", "_count": "50"}
    kept = f"{BASE}/Observation?code={LOINC}|2160-0&patient=b,a&_count=50&_offset=50"
    assert verify.lost_params("Observation", sent, kept) == []  # order inside an OR-list is free
    dropped = f"{BASE}/Observation?_count=50&_offset=50"
    assert verify.lost_params("Observation", sent, dropped) == ["patient", "code"]
    changed = f"{BASE}/Observation?patient=z&code={LOINC}|2160-0&_offset=50"
    assert verify.lost_params("Observation", sent, changed) == ["patient"]
    opaque = f"{BASE}?_getpages=9f1c&_getpagesoffset=50&_count=50"
    assert verify.lost_params("Observation", sent, opaque) == []
    fixed = verify.repaired(dropped, sent, ["patient", "code"])
    assert verify.lost_params("Observation", sent, fixed) == []
    assert "_offset=50" in fixed and "_count=50" in fixed


def page(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
        "link": [{"relation": "next", "url": next_url}] if next_url else [],
    }
    return body


@responses.activate
def test_walk_repairs_a_next_link_that_dropped_the_search(client: http.FhirClient) -> None:
    proc = {"resourceType": "Procedure", "id": "x1", "subject": {"reference": "Patient/a"}}
    responses.get(f"{BASE}/Procedure?patient=a&_count=1", json=page([proc], f"{BASE}/Procedure?_offset=1"))
    repaired = f"{BASE}/Procedure?_offset=1&patient=a"
    responses.get(
        repaired,
        json=page([{**proc, "id": "x2"}]),
        match=[responses.matchers.query_string_matcher("_offset=1&patient=a")],
    )
    params = {"patient": "a", "_count": "1"}
    pages = list(bundles.walk(client, "Procedure", resource_type="Procedure", params=params))
    assert [line.resource["id"] for p in pages for line in p.lines] == ["x1", "x2"]  # type: ignore[union-attr]
    assert pages[0].next_url == repaired  # the cursor holds the repaired link


@responses.activate
def test_walk_refuses_such_a_link_when_told_to_and_yields_nothing_of_the_page(
    client: http.FhirClient,
) -> None:
    proc = {"resourceType": "Procedure", "id": "x1", "subject": {"reference": "Patient/a"}}
    responses.get(f"{BASE}/Procedure", json=page([proc], f"{BASE}/Procedure?_offset=1"))
    walk = bundles.walk(
        client, "Procedure", resource_type="Procedure", params={"patient": "a"}, next_links="refuse"
    )
    with pytest.raises(errors.ServerFault, match="next links drop the search parameters") as caught:
        next(walk)
    assert caught.value.fault == "next_link_drops_params" and caught.value.setting == "next_links"


@responses.activate
def test_walk_stops_at_a_foreign_result_before_handing_on_its_page(client: http.FhirClient) -> None:
    mine = {"resourceType": "Procedure", "id": "x1", "subject": {"reference": "Patient/a"}}
    theirs = {"resourceType": "Procedure", "id": "y1", "subject": {"reference": "Patient/q"}}
    responses.get(f"{BASE}/Procedure", json=page([mine, theirs]))
    walk = bundles.walk(client, "Procedure", resource_type="Procedure", params={"patient": "a"})
    with pytest.raises(errors.ServerFault, match="patients that were not asked for"):
        next(walk)


def test_a_server_profile_sets_defaults_and_the_sites_own_keys_win() -> None:
    base = {"kind": "fhir-rest", "base_url": "https://ehr.example.org/fhir", "auth": {"kind": "none"}}
    assert settings.RestSource(**base).patient_batch_size == 100
    epic = settings.RestSource(**base, server_profile="epic")
    assert epic.patient_batch_size == 1
    assert settings.RestSource(**base, server_profile="epic", patient_batch_size=5).patient_batch_size == 5
    with pytest.raises(ValueError, match="server_profile"):
        settings.RestSource(**base, server_profile="meditech")
