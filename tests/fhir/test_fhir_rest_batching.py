"""Patient batches sized by the URL budget, and halved when a server refuses a long URL.

Against a mocked server (``responses``): every search URL the source sends
stays within ``max_url_bytes`` and ``patient_batch_size``, every patient is
asked for exactly once, and a 414 (or a 400 that says the URL is too long)
halves the batch for the rest of the pass without losing or repeating a page.
Medication lookups by id keep to the same budget and are halved the same way.
The same result set with fewer requests against a real server is in
``test_fhir_rest_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

import pytest
import responses

from adapter import errors
from adapter import roster as roster_mod
from adapter.fhir import batching, http, rest, search_terms
from adapter.fhir import settings as fhir_settings
from adapter.fhir.source import SourceLine
from adapter.fhir.wanted import Wanted

from fhirtesting import BASE

MRN = "http://hospital-north.example/fhir/mrn"
T0 = "2025-06-01T10:00:00.000Z"
PATIENTS = [f"patient-{n:04d}-{'x' * 20}" for n in range(60)]  # ~35 bytes each, like server UUIDs


def make_source(
    client: http.FhirClient, wanted: Wanted | None = None, **settings: Any
) -> rest.RestSearchSource:
    """A source over 60 roster patients; pages are read in this thread (no prefetch)."""
    config = fhir_settings.RestSource(kind="fhir-rest", base_url=BASE, **settings)
    entries = [
        roster_mod.RosterEntry(MRN, f"NM{n:07d}", f"S-{n:03d}", dt.date(2025, 1, 1)) for n in range(60)
    ]
    return rest.RestSearchSource(
        "demo-north",
        config,
        roster=roster_mod.Roster(entries),
        wanted=wanted or Wanted(),
        client=client,
        prefetch=False,
    )


def searched(call: Any, name: str) -> list[str]:
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(call.request.url).query))
    return query[name].split(",")


def procedures_of(request: Any) -> tuple[int, dict[str, str], str]:
    """One Procedure per searched patient, in one page."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    found = [
        {
            "resourceType": "Procedure",
            "id": f"x-{p}",
            "status": "completed",
            "subject": {"reference": f"Patient/{p}"},
        }
        for p in query["patient"].split(",")
    ]
    body = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": T0},
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in found],
    }
    return 200, {}, json.dumps(body)


def read_all(source: rest.RestSearchSource, resource_type: str = "Procedure") -> list[str]:
    pages = source.pages(
        resource_type, patient_refs=[f"Patient/{p}" for p in PATIENTS], since=None, resume=None
    )
    return [line.resource["id"] for page in pages for line in page.lines if isinstance(line, SourceLine)]


# ------------------------------------------------------------------ packing


@pytest.mark.parametrize("budget", [600, 1200, 6000])
@responses.activate
def test_batches_fill_the_url_budget_and_never_pass_it_or_the_batch_size(
    client: http.FhirClient, budget: int
) -> None:
    responses.add_callback(responses.GET, f"{BASE}/Procedure", callback=procedures_of)
    source = make_source(client, max_url_bytes=budget, patient_batch_size=40)
    assert read_all(source) == [f"x-{p}" for p in sorted(PATIENTS)]  # each patient once, in order
    urls = [call.request.url for call in responses.calls]
    sizes = [len(searched(call, "patient")) for call in responses.calls]
    assert all(len(url) <= budget for url in urls)
    assert all(size <= 40 for size in sizes)
    # Full: one more patient would have passed the budget or the batch size.
    per_patient = len(urllib.parse.quote_plus(PATIENTS[0])) + batching.SEPARATOR_BYTES
    assert all(size == 40 or len(url) + per_patient > budget for url, size in zip(urls[:-1], sizes[:-1]))
    assert source.requests_made == len(urls) == -(-len(PATIENTS) // min(sizes[0], 40))


def test_a_larger_budget_needs_fewer_searches(client: http.FhirClient) -> None:
    def searches(budget: int) -> int:
        return len(make_source(client, max_url_bytes=budget).plan("Procedure", PATIENTS, None))

    assert searches(600) > searches(2000) > searches(6000) == 1  # 60 patients <= the default 100


def test_codes_take_at_most_half_the_url_so_patients_still_batch(client: http.FhirClient) -> None:
    codes = frozenset(("http://loinc.org", f"{n:05d}-{n % 10}") for n in range(300))
    source = make_source(client, Wanted({"Observation": codes}), max_url_bytes=4000)
    plan = source.plan("Observation", PATIENTS, dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
    chunks = {dict(q.params)["code"] for q in plan}
    assert sorted(c for chunk in chunks for c in chunk.split(",")) == search_terms.code_tokens(codes)
    for query in plan:
        assert batching.url_bytes(BASE, "Observation", query.params) <= 4000
        assert len(urllib.parse.urlencode([("code", dict(query.params)["code"])])) <= 2000
        assert len(query.batch) > 1 or query.batch[-1] == sorted(PATIENTS)[-1]


def test_a_server_profile_without_or_lists_keeps_one_patient_per_search(client: http.FhirClient) -> None:
    for profile in ("epic", "oracle-health"):
        plan = make_source(client, server_profile=profile).plan("Procedure", PATIENTS, None)
        assert [len(q.batch) for q in plan] == [1] * len(PATIENTS)


MEDICATIONS = [f"med-{n:03d}-{'y' * 30}" for n in range(60)]  # long server ids


def medications_of(request: Any) -> tuple[int, dict[str, str], str]:
    """The asked Medications, one page."""
    asked = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))["_id"].split(",")
    body = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {"resourceType": "Medication", "id": i, "code": {"text": i}},
                "search": {"mode": "match"},
            }
            for i in asked
        ],
    }
    return 200, {}, json.dumps(body)


def naming(medication_ids: list[str]) -> list[dict[str, Any]]:
    """One administration per Medication id, naming its drug by reference."""
    return [
        {
            "resourceType": "MedicationAdministration",
            "id": f"a{n}",
            "medicationReference": {"reference": f"Medication/{m}"},
        }
        for n, m in enumerate(medication_ids)
    ]


@responses.activate
def test_medication_lookups_keep_to_the_url_budget_too(client: http.FhirClient) -> None:
    """Drugs named by reference: the Medication ids are packed like patients, never past the budget."""
    responses.add_callback(responses.GET, f"{BASE}/Medication", callback=medications_of)
    administrations = naming(MEDICATIONS)
    source = make_source(client, max_url_bytes=700)
    assert source.medications.inline(administrations) == len(MEDICATIONS)
    urls = [call.request.url for call in responses.calls]
    assert len(urls) > 2 and all(len(url) <= 700 for url in urls)
    assert [i for call in responses.calls for i in searched(call, "_id")] == sorted(MEDICATIONS)  # each once
    for call in responses.calls:
        assert searched(call, "_count") == [str(len(searched(call, "_id")))]


@responses.activate
def test_a_medication_lookup_refused_as_too_long_is_asked_again_in_halves(
    client: http.FhirClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway shorter than the configured budget: every reference still resolves."""

    def respond(request: Any) -> tuple[int, dict[str, str], str]:
        if len(request.url) > 900:
            return 414, {}, "<html><body>URI Too Long</body></html>"
        return medications_of(request)

    responses.add_callback(responses.GET, f"{BASE}/Medication", callback=respond)
    administrations = naming(MEDICATIONS[:40])
    assert make_source(client).medications.inline(administrations) == 40  # default budget: one URL of 40
    answered = [call for call in responses.calls if call.response.status_code == 200]
    assert [i for call in answered for i in searched(call, "_id")] == sorted(MEDICATIONS[:40])
    assert all(len(call.request.url) <= 900 for call in answered)
    assert "refused a Medication lookup URL as too long" in caplog.text


@pytest.mark.parametrize(("budget", "message"), [(100, "greater than or equal to 512"), (10**6, "less than")])
def test_max_url_bytes_is_checked(budget: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fhir_settings.RestSource(kind="fhir-rest", base_url=BASE, max_url_bytes=budget)


# ------------------------------------------------------------------ refusals


def refusing_long_urls(limit: int, status: int = 414, reason: str = "URI Too Long") -> Any:
    def respond(request: Any) -> tuple[int, dict[str, str], str]:
        if len(request.url) > limit:
            return status, {}, f"<html><body>{reason}</body></html>"
        return procedures_of(request)

    return respond


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (414, "URI Too Long"),
        (400, "Bad Request: request line too long"),
        (404, "The query string is too long."),
    ],
)
@responses.activate
def test_a_refused_long_url_halves_the_batch_for_the_rest_of_the_pass(
    client: http.FhirClient, status: int, reason: str
) -> None:
    responses.add_callback(
        responses.GET, f"{BASE}/Procedure", callback=refusing_long_urls(900, status, reason)
    )
    source = make_source(client, max_url_bytes=6000)
    assert read_all(source) == [f"x-{p}" for p in sorted(PATIENTS)]  # nothing lost, nothing twice
    refused = [c for c in responses.calls if c.response.status_code == status]
    assert 1 <= len(refused) <= 3  # 60 -> 30 -> 15 -> ...; each size refused once at most
    sizes = [len(searched(c, "patient")) for c in responses.calls if c.response.status_code == 200]
    assert sum(sizes) == len(PATIENTS) and len(set(sizes[:-1])) == 1
    assert source.requests_made == len(responses.calls)
    # The next type starts at the narrowed size: no refusal again.
    responses.calls.reset()
    read_all(source)
    assert all(c.response.status_code == 200 for c in responses.calls)


@responses.activate
def test_a_refused_next_link_is_not_split_and_ends_the_pass(client: http.FhirClient) -> None:
    two = sorted(PATIENTS)[:2]
    next_url = f"{BASE}/Procedure?patient={','.join(two)}&page=2&{'p' * 1000}=1"
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": T0},
        "entry": [
            {
                "resource": {
                    "resourceType": "Procedure",
                    "id": "x1",
                    "status": "completed",
                    "subject": {"reference": f"Patient/{PATIENTS[0]}"},
                }
            }
        ],
        "link": [{"relation": "next", "url": next_url}],
    }
    responses.get(next_url, status=414, body="URI Too Long")
    responses.get(f"{BASE}/Procedure", json=first)
    source = make_source(client)
    with pytest.raises(errors.FatalNetworkError) as caught:
        list(source.pages("Procedure", patient_refs=[f"Patient/{p}" for p in two], since=None, resume=None))
    assert caught.value.status == 414
    assert len(responses.calls) == 2  # the first page, its refused next link; no smaller re-ask


@responses.activate
def test_identifier_searches_pack_and_halve_too(client: http.FhirClient) -> None:
    def respond(request: Any) -> tuple[int, dict[str, str], str]:
        if len(request.url) > 1500:
            return 414, {}, "URI Too Long"
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
        values = [token.split("|")[1] for token in query["identifier"].split(",")]
        patients = [
            {"resourceType": "Patient", "id": v.lower(), "identifier": [{"system": MRN, "value": v}]}
            for v in values
        ]
        body = {
            "resourceType": "Bundle",
            "type": "searchset",
            "meta": {"lastUpdated": T0},
            "entry": [{"resource": p} for p in patients],
        }
        return 200, {}, json.dumps(body)

    responses.add_callback(responses.GET, f"{BASE}/Patient", callback=respond)
    source = make_source(client)
    found = [line.resource["id"] for line in source.patients() if isinstance(line, SourceLine)]
    assert found == [f"nm{n:07d}" for n in range(60)]
    statuses = [c.response.status_code for c in responses.calls]
    assert statuses == [414] * statuses.count(414) + [200] * statuses.count(200)  # halved, then kept
